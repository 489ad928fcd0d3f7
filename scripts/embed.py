"""Embed a large image set for a gallery, on one process or several: `accelerate launch scripts/embed.py`.

    accelerate launch --num_processes 2 scripts/embed.py people/ --model runs/edgeface-xxs --output shards/
    hfr-hf enroll shards/ --gallery gallery/          # takes the shards in

IMAGES is a folder with one subfolder per person or a CSV `identity,path[,spectrum]` (as `hfr-hf enroll`). The list
is cut into shards (`--shard-size` images); the pending shards are split between the processes with Accelerate's
`split_between_processes`, each aligned and embedded in batches and written whole (hfr_hf/gallery/shards.py), so a
run started again continues where it stopped. Unusable images are skipped and recorded in their shard.
"""

from __future__ import annotations

import argparse

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from tqdm.auto import tqdm

from hfr_hf.gallery import Embedder, read_enrolment_list
from hfr_hf.gallery.shards import embed_shard, pending_shards, prepare_shards


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", help="folder with a subfolder per person, or a CSV identity,path[,spectrum]")
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter")
    parser.add_argument("--output", required=True, help="shard folder (created; reused to resume)")
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--spectrum", default="visible")
    parser.add_argument("--align", choices=["auto", "always", "never"], default="auto")
    args = parser.parse_args(argv)

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator reads it
    listed = read_enrolment_list(args.images, args.spectrum)
    embedder = Embedder.load(args.model, args.adapter, align=args.align, device=str(state.device))
    if state.is_main_process:
        prepare_shards(args.output, listed, embedder, args.shard_size)
    state.wait_for_everyone()
    manifest = prepare_shards(args.output, listed, embedder, args.shard_size)  # every process checks the same run
    pending = pending_shards(args.output, manifest)
    with state.split_between_processes(pending) as mine:
        for shard in tqdm(mine, desc=f"process {state.process_index}", unit="shard", disable=not mine):
            embed_shard(args.output, listed, embedder, shard, args.shard_size)
    state.wait_for_everyone()
    if state.is_main_process:
        print(
            f"{manifest['shards']} shards of {manifest['images']} images in {args.output} ({len(pending)} written now)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
