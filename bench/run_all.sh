#!/usr/bin/env bash
# Runs every benchmark in sequence on an otherwise idle machine; tables go to bench/results/*.md
# (bench/results is not committed; bench/README.md quotes them).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
py=.venv/bin/python
$py bench/bench_superpixels.py > bench/results/superpixels.md 2> bench/results/superpixels.log
$py bench/bench_counterfactual.py > bench/results/counterfactual.md 2> bench/results/counterfactual.log
$py bench/bench_fullgrad.py --guard imagenet > bench/results/fullgrad.md 2> /dev/null
$py bench/bench_fullgrad.py --guard open-nsfw 2> /dev/null | tail -1 >> bench/results/fullgrad.md
{
  $py bench/bench_service.py --route moderations --clients 4 --seconds 20
  $py bench/bench_service.py --route safeguard --guard imagenet --clients 2 --seconds 30 | tail -1
} > bench/results/service.md 2> bench/results/service.log
$py bench/bench_batch.py --limit 40 > bench/results/batch.md 2> bench/results/batch.log
$py bench/bench_pairs.py > bench/results/pairs.md 2> bench/results/pairs.log
$py bench/bench_search.py --powerset-every 20 --oracle-every 25 --oracle-k 10 > bench/results/search.md 2> bench/results/search.log
$py bench/bench_concurrency.py --limit 16 > bench/results/concurrency.md 2> bench/results/concurrency.log
$py bench/bench_guards.py > bench/results/guards.md 2> bench/results/guards.log
$py bench/bench_detectors.py > bench/results/detectors.md 2> bench/results/detectors.log
$py bench/bench_video.py > bench/results/video.md 2> bench/results/video.log
$py bench/bench_video_service.py > bench/results/video-service.md 2> bench/results/video-service.log
