"""Stage score: B-NET and E-NET accuracy on the benchmark set (stage benchmark) for this run's
networks, the shipped model (models/default) and, when present, the published TIP-2022 weights,
all measured in the same run. Writes reports/eval/benchmark.{json,md}."""

import json
import sys
from pathlib import Path

from defocus import backend

backend.use_params()  # before Keras loads: params.yaml's backend

from defocus.benchmark import accuracy  # noqa: E402
from defocus.images import atomic_write, save_json  # noqa: E402
from defocus.patchsets import open_split  # noqa: E402
from defocus.report import fmt, markdown_table  # noqa: E402
from defocus.weights import load_model, load_published  # noqa: E402

BENCH, OUT = Path("data/benchmark"), Path("reports/eval/benchmark")
ROWS = {"this_run": "Ours (this run)", "shipped": "Ours (shipped model, models/default)",
        "published": "Published (TIP 2022)"}


def main() -> int:
    models = {"this_run": lambda: load_model("data/models/pipeline"), "shipped": lambda: load_model("models/default")}
    if json.loads(Path("data/reference/status.json").read_text())["status"] == "ok":
        models["published"] = lambda: load_published("data/reference")
    sets = {net: open_split(BENCH / net, "val") for net in ("bnet", "enet")}
    scores = {}
    for key, load in models.items():
        model = load()
        scores[key] = {"bnet": accuracy(model.bnet, *sets["bnet"]), "enet": accuracy(model.enet, *sets["enet"])}
        print(f"score: {ROWS[key]}: B-NET {scores[key]['bnet']['accuracy']:.4f} exact, "
              f"{scores[key]['bnet']['tolerance_accuracy']:.4f} within one level; "
              f"E-NET {scores[key]['enet']['accuracy']:.4f}", flush=True)
    save_json(OUT.with_suffix(".json"), {k: {n: {m: round(v, 4) if isinstance(v, float) else v for m, v in d.items()}
                                             for n, d in s.items()} for k, s in scores.items()})
    rows = [[ROWS[k], fmt(s["bnet"]["accuracy"], 4), fmt(s["bnet"]["tolerance_accuracy"], 4),
             fmt(s["enet"]["accuracy"], 4)] for k, s in scores.items()]
    if "published" not in scores:
        rows.append([ROWS["published"], "unavailable", "unavailable", "unavailable"])
    n_b, n_e = len(sets["bnet"][1]), len(sets["enet"][1])
    text = ("# Networks on the benchmark set\n\n"
            f"Unrotated 41 x 41 patches at Canny edges of photos and objects no profile trains on (stage "
            f"`benchmark`): B-NET {n_b:,} patches, equally many per blur level (23); E-NET {n_e:,}, equally many "
            "depth and pattern edges. Accuracy: share of patches whose most probable class is the true one; "
            "within one level: B-NET's class at most one level (0.25 px) off.\n\n"
            + markdown_table(["Networks", "B-NET exact", "B-NET within one level", "E-NET"], rows))
    atomic_write(OUT.with_suffix(".md"), lambda p: Path(p).write_text(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
