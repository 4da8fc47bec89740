#!/usr/bin/env bash
# The screenshot of the live napari view in docs/realtime.rst (docs/_static/napari_live.png), from a real session:
# `make demo`'s held-out subject replayed over LSL, predicted by `spec2vol_bids realtime` with `make demo`'s model,
# followed by the viewer that `realtime --napari` starts. Needs a display (run it under xvfb-run on a server).
#
#   xvfb-run -a -s "-screen 0 1600x1000x24" bash docs/scripts/live_view_screenshot.sh DEMO_DIR [OUT_PNG]
#
# DEMO_DIR is the folder `make demo` writes (bids/ and model/). Takes about 2.5 minutes (real time: 40 volumes
# after the 20-volume input of the first prediction, TR 2 s).
set -euo pipefail
demo=${1:?usage: live_view_screenshot.sh DEMO_DIR [OUT_PNG]}
png=${2:-docs/_static/napari_live.png}
py=${PYTHON:-python}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
eeg=$(ls "$demo"/bids/sub-*/eeg/sub-*_eeg.vhdr | tail -n 1)  # the held-out (last) subject
name=$(basename "$eeg" _eeg.vhdr)
stream=live-doc-$$
"$py" -m spec2vol_bids replay "$eeg" --name "$stream" --duration 200 --no-progress -q &
"$py" -m napari_spec2vol._live "$work/$name"_desc-spec2vol_bold.nii --screenshot "$png" --exit-after 40 \
    --timeout 300 --title "spec2vol_bids realtime --napari" &
viewer=$!
"$py" -m spec2vol_bids realtime --model "$demo/model/model.ckpt" --stream "$stream" \
    --marker-stream "$stream-annotations" --out "$work" --name "$name" --max-volumes 41 --outlet none -q \
    ${TR:+--tr "$TR"}
wait "$viewer"
echo "wrote $png"
