#!/usr/bin/env bash
# Conformance check: RTF blur maps with the published TIP-2022 weights.
#
# Blur maps of the RTF scenes in the
# dataset mirror with the published TIP-2022 weights and the authors' edge maps
# (psi = 20, as their code), then their MAE against the RTF ground truth.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DEFOCUS_SHARED=${DEFOCUS_SHARED:-$(cd .. && pwd)/shared}
REF=${DEFOCUS_REFERENCE:-$DEFOCUS_SHARED/reference/tip2022}
RTF=$DEFOCUS_SHARED/data/rtf
if [ ! -d "$REF" ] || [ ! -d "$RTF" ]; then
  echo "run: the dataset mirror or the published weights are missing ($RTF, $REF)." >&2
  echo "run: set DEFOCUS_SHARED to the folder holding data/ and reference/." >&2
  exit 2
fi
imgs=(); edges=()
for f in "$RTF"/image_*.png; do
  n=$(basename "$f" .png); n=${n#image_}
  imgs+=("$f"); edges+=("$REF/edges/edge_$n.png")
done
.venv/bin/defocus estimate "${imgs[@]}" --edges "${edges[@]}" --model "$REF" --psi 20 --out results/rtf
.venv/bin/python scripts/rtf_mae.py results/rtf "$RTF"
