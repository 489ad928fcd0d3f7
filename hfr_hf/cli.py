"""`hfr-hf` command line: thin wrappers over the package's modules."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .files import write_atomic

__all__ = ["main"]

# The variant names, here so that building the parser imports neither torch nor transformers (tested equal to
# configuration_edgeface.VARIANTS).
VARIANTS = ("xxs", "xs", "xs_gamma_06", "s_gamma_05", "base")


def _expand_images(items: list[str]) -> list[Path]:
    from .images import list_images

    paths = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths.extend(list_images(path))
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist.")
    if not paths:
        raise ValueError(f"No images found in {', '.join(items)}.")
    return paths


def _aligner(args: argparse.Namespace, **options):
    """The `FaceAligner` of --select, --spectrum and --detector (`enroll`'s --spectrum, the images' recorded
    spectrum, picks the detector only when one is given)."""
    from .alignment import FaceAligner
    from .alignment.detector import SPECTRA

    detector = getattr(args, "detector", None) or os.environ.get("HFR_HF_DETECTOR") or None
    spectrum = getattr(args, "spectrum", "visible")
    if args.command == "enroll":
        spectrum = spectrum if detector and spectrum in SPECTRA else "visible"
    if spectrum != "visible" and detector is None:
        raise ValueError(
            f"--spectrum {spectrum} needs --detector FOLDER_OR_REPO, the cross-spectral detector (made by "
            "`hfr-hf train-detector`), or HFR_HF_DETECTOR set to one."
        )
    return FaceAligner(select=args.select, spectrum=spectrum, detector_weights=detector, **options)


def _alignment(args: argparse.Namespace) -> dict:
    """`align` / `aligner` for `embed_images` from --align / --no-align (default: 112×112 images are taken as
    aligned crops, every other image is detected and aligned)."""
    align = "always" if args.align else "never" if args.no_align else "auto"
    return {"align": align, "aligner": None if align == "never" else _aligner(args)}


def cmd_train_detector(args: argparse.Namespace) -> int:
    import dataclasses

    from .alignment.detector_training import DetectorTrainingConfig, train_detector

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    options = {
        "renders_per_image": args.renders_per_image,
        "negative_scenes": args.negative_scenes,
        "epochs": args.epochs,
        "seed": args.seed,
        "networks": tuple(args.networks) if args.networks else None,
        "init_detector": args.init,
        "learning_rate": args.learning_rate,
        "exclude": tuple(args.exclude),
        "negative_photos": tuple(args.negatives),
        "landmark_weight": args.landmark_weight,
        "mined_renders": args.mined_renders,
        "bootstrap_scenes": args.bootstrap_scenes,
        "real_thermal": args.real_thermal,
        "real_thermal_labeller": args.labeller,
        "mirror_average": args.mirror_average or None,
        "halving_pyramid": False if args.reference_pyramid else None,
        "scale_factor": args.scale_factor,
        "thresholds": tuple(args.thresholds) if args.thresholds else None,
    }
    config = dataclasses.replace(DetectorTrainingConfig(), **{k: v for k, v in options.items() if v is not None})
    report = train_detector(args.images, args.output, config)
    print(
        f"Detector saved to {args.output}: {report['labelled']} photos labelled of {report['photos']}, "
        f"{report['seconds']['total']:.0f} s; report in {Path(args.output) / 'report.json'}"
    )
    for name, network in report["networks"].items():
        before, after = network["held_out_before"], network["held_out_after"]
        print(f"  {name}: held-out face/not-face accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}")
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    from .alignment.folder import align_folder, read_landmarks_csv

    landmarks = read_landmarks_csv(args.landmarks) if args.landmarks else None
    aligner = _aligner(args, min_face_size=args.min_face_size, image_size=args.size)
    report = align_folder(args.source, args.destination, aligner, landmarks=landmarks, twins=args.twins)
    print(f"Aligned {len(report.aligned)} images into {args.destination}; details in {report.csv_path}")
    if report.failed:
        print(f"{len(report.failed)} images failed:", file=sys.stderr)
        for path, reason in report.failed.items():
            print(f"  {path}: {reason}", file=sys.stderr)
        return 3
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import check_output_dir, convert_checkpoint, official_checkpoint_path

    check_output_dir(args.output, args.overwrite)  # before a possible download of the checkpoint
    checkpoint = args.checkpoint
    if checkpoint in VARIANTS and not Path(checkpoint).exists():
        checkpoint = official_checkpoint_path(checkpoint, args.weights_dir)
        args.variant = args.variant or args.checkpoint
    from .hub import converted_model_card

    output = convert_checkpoint(
        checkpoint, args.output, variant=args.variant, overwrite=args.overwrite, model_card=converted_model_card
    )
    print(f"Converted {checkpoint} -> {output}")
    return 0


def _embed_shards(args: argparse.Namespace, output: Path) -> int:
    from .gallery import Embedder, read_enrolment_list
    from .gallery.shards import embed_to_shards

    if len(args.images) != 1 or args.raw:
        raise ValueError("Shards (--output FOLDER) take one folder per person or CSV, and normalised embeddings.")
    alignment = _alignment(args)
    embedder = Embedder.load(args.model, getattr(args, "adapter", None), device=args.device, **alignment)
    manifest, written = embed_to_shards(output, read_enrolment_list(args.images[0]), embedder, args.shard_size)
    print(f"{manifest['shards']} shards of {manifest['images']} images in {output} ({written} written now)")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from .inference import embed_images, load_model

    output = Path(args.output)
    if not output.suffix:  # a folder: resumable shards for a gallery
        return _embed_shards(args, output)
    if output.suffix not in (".npz", ".safetensors"):
        raise ValueError(f"--output must end in .npz or .safetensors (or be a folder for shards), got {output.name}.")
    alignment = _alignment(args)
    paths = _expand_images(args.images)
    model, processor = load_model(args.model, args.device, light=True)
    embeddings = embed_images(model, processor, paths, args.batch_size, normalize=not args.raw, **alignment)
    names = [str(p) for p in paths]

    def write(tmp: str) -> None:
        import numpy as np

        if output.suffix == ".npz":
            with open(tmp, "wb") as handle:
                np.savez(handle, embeddings=embeddings, paths=np.array(names))
        else:
            from safetensors.numpy import save_file

            save_file({"embeddings": embeddings}, tmp, metadata={"paths": json.dumps(names)})

    write_atomic(output, write)
    print(f"Wrote {len(names)} embeddings of size {embeddings.shape[1]} to {output}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if "OMP_NUM_THREADS" in os.environ:  # the user's choice
        return _verify(args)
    import torch

    # Two crops gain nothing from intra-op threads, and on a busy CPU they spin: 5.9 s -> 3.6 s cold at load 7 on 2
    # cores (scripts/bench_cli.py).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _verify(args)
    finally:
        torch.set_num_threads(threads)


def _verify(args: argparse.Namespace) -> int:
    from .alignment import AlignmentError, check_crop
    from .inference import cosine_similarity, embed_images, face_crops, load_model

    paths = [Path(args.image_a), Path(args.image_b)]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Image {path} does not exist.")
    alignment = _alignment(args)
    model, processor = load_model(args.model, args.device, light=True)
    crops = face_crops(paths, processor, **alignment)
    # The decision path: a blank or faceless crop must not be scored as a face. The check is the detector's of
    # --spectrum: MTCNN judges visible crops, the cross-spectral detector thermal and NIR ones.
    checker = None if args.no_face_check else alignment["aligner"] or _aligner(args)
    size = (processor.size["width"], processor.size["height"])
    for path, crop in zip(paths, crops):
        try:
            checker.check_crop(_resized(crop, size)) if checker else check_crop(_resized(crop, size))
        except AlignmentError as error:
            hint = " Align it from landmarks (hfr-hf align --landmarks)"
            if checker is not None and checker.spectrum == "visible":
                hint += (
                    ", give --spectrum thermal (or nir, or auto) and --detector for a thermal or NIR crop, or pass "
                    "--no-face-check for an aligned crop that no detector can judge"
                )
            elif checker is not None:
                hint += ", or pass --no-face-check for an aligned crop that the detector cannot judge"
            raise ValueError(f"{path}: {str(error).rstrip('.')}; no score is given.{hint}.") from None
    embeddings = embed_images(model, processor, crops, progress=False, align="never")
    score = float(cosine_similarity(embeddings[:1], embeddings[1:])[0, 0])
    result = {"image_a": str(paths[0]), "image_b": str(paths[1]), "cosine": score}
    line = f"cosine similarity {score:.4f}"
    if args.threshold is not None:
        result["same_person"] = score >= args.threshold
        line += f" -> {'same person' if result['same_person'] else 'different people'} at threshold {args.threshold}"
    print(json.dumps(result) if args.json else line)
    return 0


def _resized(crop, size: tuple[int, int]):
    """A crop given as is (--no-align), at the model's input size, as the processor will see it."""
    import cv2
    import numpy as np

    crop = np.asarray(crop)
    return crop if crop.shape[1::-1] == size else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


def cmd_verify_folder(args: argparse.Namespace) -> int:
    from .evaluation import all_pairs_scores, verification_summary
    from .images import list_images
    from .inference import cosine_similarity, embed_images, load_model

    root = Path(args.root)
    paths = list_images(root)
    loose = [p for p in paths if len(p.relative_to(root).parts) < 2]
    folders = {p.relative_to(root).parts[0] for p in paths if p not in loose}
    if loose or len(folders) < 2:
        where = f"{len(loose)} directly in {root}" + (
            f" and {len(paths) - len(loose)} in sub-folders" if folders else ""
        )
        raise ValueError(
            f"{root} must hold one sub-folder of images per person (at least two people), e.g. {root}/alice/1.jpg; "
            f"found {len(paths)} images, {where}, in {len(folders)} person folder{'s' if len(folders) != 1 else ''}."
        )
    identities = [p.relative_to(root).parts[0] for p in paths]
    alignment = _alignment(args)
    model, processor = load_model(args.model, args.device, light=True)
    embeddings = embed_images(model, processor, paths, args.batch_size, **alignment)
    genuine, impostor = all_pairs_scores(cosine_similarity(embeddings, embeddings), identities)
    summary = verification_summary(genuine, impostor)
    print(f"{len(paths)} images of {len(set(identities))} identities in {root}")
    print(summary.table())
    if args.json:
        report = {"root": str(root), "model": str(args.model), "images": len(paths), **summary.to_dict()}
        write_atomic(Path(args.json), lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    return 0


def _load_adapter(model, adapter: str):
    """Wrap `model` with a PEFT adapter folder (adapters come from a later part of the package)."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ValueError("--adapter needs PEFT; install it with `pip install hfr-hf[train]`.") from None
    from .adapters import check_adapter_folder

    check_adapter_folder(adapter, as_model="give it as the model")
    return PeftModel.from_pretrained(model, adapter).eval()


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx

    output = export_onnx(
        args.model_dir, args.output, adapter=args.adapter, opset=args.opset, optimize=not args.no_optimize
    )
    merged = f" with adapter {args.adapter} merged" if args.adapter else ""
    print(f"Exported {args.model_dir}{merged} -> {output} ({output.stat().st_size / 2**20:.1f} MiB, parity checked)")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from .quantization import quantize_onnx

    if Path(args.model).suffix != ".onnx":
        raise ValueError(f"quantize takes an .onnx file from `hfr-hf export-onnx`, got {args.model}.")
    report = quantize_onnx(
        args.model,
        args.output,
        calibration=args.calibration,
        method=args.method,
        min_cosine_target=args.min_cosine,
        max_images=args.max_images,
        per_channel=not args.per_tensor,
        quant_format=args.format,
        smoothing=None if args.no_smoothing else args.smoothing,
    )
    print(f"{report.summary()} -> {args.output} ({Path(args.output).stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import (
        EmbeddingCache,
        evaluate_protocol,
        plot_cmc,
        plot_det,
        plot_roc,
        read_protocol,
        resolve_images,
        write_scores,
    )
    from .inference import embed_images, load_model

    if args.adapter and Path(args.model).suffix == ".onnx":
        raise ValueError("An .onnx model cannot take --adapter; merge it at export: `hfr-hf export-onnx --adapter`.")
    protocol = read_protocol(args.protocol)
    keys, files = resolve_images(protocol, args.root)
    report_path = Path(args.report)
    if report_path.suffix != ".json":
        raise ValueError(f"--report must end in .json, got {report_path.name}.")
    alignment = _alignment(args)
    model, processor = load_model(args.model, args.device, light=not args.adapter)  # PEFT wraps EdgeFaceModel
    if args.adapter:
        model = _load_adapter(model, args.adapter)
    aligner = alignment["aligner"]
    detection = [aligner.spectrum, str(aligner.detector_weights or "")] if aligner else []
    fingerprint = json.dumps(
        [str(Path(args.model).resolve()), args.adapter, alignment["align"], args.select, *detection]
    )
    cache = EmbeddingCache(args.cache, fingerprint)
    todo = set(cache.missing(keys))
    if todo:
        pick = [(k, f) for k, f in zip(keys, files) if k in todo]
        embeddings = embed_images(model, processor, [f for _, f in pick], args.batch_size, **alignment)
        cache.update([k for k, _ in pick], embeddings)
        cache.save()
    result = evaluate_protocol(protocol, cache, bootstrap=args.bootstrap)
    result.report.update(
        model=str(args.model), adapter=args.adapter, root=str(args.root), images=len(keys), align=alignment["align"]
    )
    if args.scores:
        scores = Path(args.scores)
        for fold, rows in result.scores.items():
            name = (
                scores
                if len(result.scores) == 1
                else scores.with_name(f"{scores.name.split('.')[0]}-fold{fold}{''.join(scores.suffixes)}")
            )
            write_scores(name, rows)
        result.report["scores"] = str(scores)
    if args.plots:
        plots = Path(args.plots)
        label = Path(str(args.model)).name + (f" + {Path(args.adapter).name}" if args.adapter else "")
        curves = {(label if len(result.pairs) == 1 else f"{label} fold {f}"): p for f, p in result.pairs.items()}
        written = [
            plot_roc(curves, plots / "roc.png", f"ROC — {protocol.name}"),
            plot_det(curves, plots / "det.png", f"DET — {protocol.name}"),
        ]
        if result.cmcs:
            cmcs = {(label if len(result.cmcs) == 1 else f"{label} fold {f}"): c for f, c in result.cmcs.items()}
            written.append(plot_cmc(cmcs, plots / "cmc.png", f"CMC — {protocol.name}"))
        result.report["plots"] = [str(p) for p in written]
    write_atomic(report_path, lambda tmp: Path(tmp).write_text(result.to_json()))
    print(f"{protocol.name}: {protocol.kind}, {len(keys)} images, {len(result.report['folds'])} fold(s)")
    print(result.table())
    print(f"Report written to {report_path}")
    return 0


def _experiment_training(args: argparse.Namespace) -> dict:
    """The TrainingConfig fields that `hfr-hf experiment`'s flags set; flag mistakes are named as flags."""
    training: dict = {"num_epochs": args.epochs} if args.epochs else {}
    if args.learning_rate:
        if args.preset == "auto":
            raise ValueError(
                "--preset auto chooses the learning rate itself; leave out --learning-rate, or give a fixed --preset."
            )
        training["learning_rate"] = args.learning_rate
    auto = {
        "auto_budget_s": args.auto_budget,
        "auto_epochs": args.auto_epochs,
        "auto_presets": args.auto_presets,
        "auto_finalists": args.auto_finalists,
    }
    given = {name: value for name, value in auto.items() if value is not None}
    if given and args.preset != "auto":
        flags = ", ".join("--" + name.removesuffix("_s").replace("_", "-") for name in given)
        raise ValueError(f"{flags} set the preset search, which only --preset auto runs; add --preset auto.")
    training.update(given)
    loss = {
        name: value
        for name, value in (
            ("target_identity_weight", args.target_identity_weight),
            ("alignment_weight", args.alignment_weight),
            ("target_temperature", args.target_temperature),
            ("self_distillation_weight", args.self_distillation_weight),
            ("contrastive_weight", args.contrastive_weight),
            ("cross_distillation_weight", args.cross_distillation_weight),
        )
        if value is not None
    }
    real_flags = [
        flag
        for flag, value in (
            ("--real-target-data", args.real_target_data),
            ("--target-identity-weight", args.target_identity_weight),
            ("--alignment-weight", args.alignment_weight),
            ("--target-temperature", args.target_temperature),
            ("--real-target-batch-size", args.real_target_batch_size),
        )
        if value is not None
    ]
    if args.no_real_target_data and real_flags:
        raise ValueError(f"--no-real-target-data trains on the pseudo pairs alone; leave out {', '.join(real_flags)}.")
    if real_flags and not (args.real_target_data or args.thermal or args.no_real_target_data):
        raise ValueError(
            f"{', '.join(real_flags)} train on real target faces: give them with --thermal FOLDER (its PUJ train "
            "people) or --real-target-data FOLDER."
        )
    if args.real_target_data:
        training["real_target_data"] = args.real_target_data
    if args.real_target_batch_size:
        training["real_target_batch_size"] = args.real_target_batch_size
    if loss:
        training["loss"] = loss
    return training


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiment import run_experiment

    if not (args.att or args.yale):
        raise ValueError("Give the faces to build the protocol from: --att FOLDER and/or --yale FOLDER.")
    if args.detector and not args.thermal:
        raise ValueError("--detector aligns the real thermal images: give --thermal FOLDER too.")
    training = _experiment_training(args)
    result = run_experiment(
        args.model,
        args.output,
        att=args.att,
        yale=args.yale,
        thermal=args.thermal,
        detector=args.detector,
        adapter_name=args.adapter_name,
        seed=args.seed,
        training=training,
        real_target=not args.no_real_target_data,
        **({"adapter_preset": args.preset} if args.preset else {}),
    )
    print(result.table())
    print(f"Adapter in {result.adapter}; report in {result.output / 'report.json'}; plots in {result.output / 'plots'}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_model, push_space

    common = dict(
        private=args.private,
        revision=args.revision,
        token=args.token,
        commit_message=args.commit_message,
        dry_run=args.dry_run,
    )
    if args.detector:
        from .hub.detector import push_detector

        stray = [
            flag
            for flag, value in (
                ("--adapter", args.adapter),
                ("--merge", args.merge),
                ("--report", args.report),
                ("--base-repo", args.base_repo),
            )
            if value
        ]
        if stray:
            raise ValueError(f"{', '.join(stray)} apply to EdgeFace model repositories, not to a detector push.")
        result = push_detector(args.repo_id, args.detector, **common)
    elif args.space:
        model_only = (("--adapter", args.adapter), ("--merge", args.merge), ("--report", args.report))
        stray = [flag for flag, value in (*model_only, ("--base-repo", args.base_repo)) if value]
        if stray:
            raise ValueError(f"{', '.join(stray)} apply to model repositories, not to a Space push.")
        result = push_space(
            args.repo_id,
            args.space,
            model_repo=args.model_repo or [],
            set_model_variable=not args.no_space_variable,
            **common,
        )
    else:
        if args.model_repo:
            raise ValueError("--model-repo names the model a Space loads; use it with --space.")
        result = push_model(
            args.repo_id,
            args.model,
            adapter=args.adapter,
            merge=args.merge,
            base_repo=args.base_repo,
            report=args.report,
            **common,
        )
    if result.dry_run_dir is not None:
        print(
            f"Dry run: wrote the {len(result.files)} files of {result.repo_type} {result.repo_id} to {result.dry_run_dir}"
        )
    else:
        print(f"Pushed {len(result.files)} files to {result.repo_type} {result.repo_id}: {result.url or 'done'}")
    for name in result.files:
        print(f"  {name}")
    return 0


def _embedder(args: argparse.Namespace, gallery=None):
    """The gallery's embedder from --model / --adapter (default: those the gallery was enrolled with) and the
    alignment options."""
    from .gallery import Embedder

    sources = gallery.meta.get("sources", {}) if gallery is not None else {}
    model = args.model or sources.get("model")
    if not model:
        raise ValueError("Give --model: the model folder or Hub id to embed the images with.")
    adapter = args.adapter if args.adapter is not None else sources.get("adapter")
    alignment = _alignment(args)
    embedder = Embedder.load(model, adapter or None, device=args.device, **alignment)
    return embedder, {"model": str(model), "adapter": str(adapter or "")}


def cmd_enroll(args: argparse.Namespace) -> int:
    from .gallery import enroll, enroll_shards
    from .gallery.shards import MANIFEST

    if (Path(args.images) / MANIFEST).is_file():  # shards embedded before (scripts/embed.py, hfr-hf embed)
        sources = {"model": str(args.model or ""), "adapter": str(args.adapter or "")}
        report = enroll_shards(args.images, args.gallery, sources=sources, fusion=args.fusion)
    else:
        embedder, sources = _embedder(args)
        report = enroll(
            args.images,
            embedder,
            args.gallery,
            spectrum=args.spectrum,
            skip_unusable=args.skip_unusable,
            batch_size=args.batch_size,
            sources=sources,
            fusion=args.fusion,
        )
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    people = len(report.gallery.identities())
    print(f"Enrolled {report.enrolled} images into {args.gallery}: {len(report.gallery)} images of {people} people.")
    return 0


def cmd_gallery(args: argparse.Namespace) -> int:
    from .gallery import Gallery

    gallery = Gallery.open(args.gallery)
    if args.action == "list":
        if args.images:
            print("identity,path,spectrum")
            for row in gallery.list():
                print(f"{row['identity']},{row['path']},{row['spectrum']}")
        else:
            for name, count in gallery.identities().items():
                print(f"{name}\t{count}")
        print(f"{len(gallery)} images of {len(gallery.identities())} people", file=sys.stderr)
    elif args.action == "remove":
        gallery = gallery.remove(args.names)
        print(f"Removed {', '.join(args.names)}; {len(gallery)} images of {len(gallery.identities())} people remain.")
    else:  # calibrate
        embedder, _ = _embedder(args, gallery)
        vectors, _, _ = embedder.embed(_expand_images(args.names), args.batch_size)
        threshold = gallery.calibrate(vectors, embedder.fingerprint, args.fpir)
        print(f"Open-set threshold {threshold:.4f} at FPIR {args.fpir:g} on {len(vectors)} non-enrolled probes.")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    from .gallery import Gallery, identify, write_identifications

    gallery = Gallery.open(args.gallery)
    embedder, _ = _embedder(args, gallery)
    rows = identify(
        _expand_images(args.probes),
        embedder,
        gallery,
        top_k=args.top_k,
        fusion=args.fusion,
        fpir=args.fpir,
        threshold=args.threshold,
        batch_size=args.batch_size,
    )
    text = write_identifications(rows, args.output)
    if args.output:
        print(f"Wrote the top {args.top_k} candidates of {len(rows)} probes to {args.output}")
    else:
        print(text, end="")
    return 0


DETECTOR_HELP = "cross-spectral detector folder or Hub repo (hfr-hf train-detector); default $HFR_HF_DETECTOR"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfr-hf", description="Cross-spectral face recognition with EdgeFace.")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="official EdgeFace checkpoint -> Hugging Face model folder")
    convert.add_argument(
        "checkpoint", help=f"a .pt file, or a variant name ({', '.join(VARIANTS)}) to fetch the official one"
    )
    convert.add_argument("--output", required=True, help="model folder to create")
    convert.add_argument("--variant", choices=list(VARIANTS), help="default: inferred from the weights")
    convert.add_argument(
        "--weights-dir", help="folder of official checkpoints (default: $HFR_HF_WEIGHTS_DIR, else the Hub)"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    convert.set_defaults(func=cmd_convert)

    def add_model_options(sub: argparse.ArgumentParser, required: bool = True, spectrum: bool = True) -> None:
        sub.add_argument(
            "--model",
            required=required,
            help="model folder (from `hfr-hf convert`), Hub repo id, or .onnx file"
            + ("" if required else " (default: the gallery's)"),
        )
        sub.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
        alignment = sub.add_mutually_exclusive_group()
        alignment.add_argument(
            "--align", action="store_true", help="detect and align the face in every image, 112×112 ones too"
        )
        alignment.add_argument(
            "--no-align",
            action="store_true",
            help="align nothing: resize each image as it is (only for tight face crops; default: 112×112 images "
            "are taken as aligned crops, all others are detected and aligned)",
        )
        sub.add_argument("--select", choices=["confidence", "largest"], default="confidence", help="face to use")
        if spectrum:
            add_spectrum_options(sub)
        else:  # enroll: --spectrum records the images' spectrum, and picks the detector when one is given
            sub.add_argument("--detector", help=DETECTOR_HELP)

    def add_spectrum_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--spectrum",
            choices=["visible", "nir", "thermal", "auto"],
            default="visible",
            help="which detector finds and checks the faces: MTCNN (visible), the cross-spectral one (nir, "
            "thermal), or chosen per image (auto)",
        )
        sub.add_argument("--detector", help=DETECTOR_HELP)

    align = commands.add_parser("align", help="detect and align faces: mirror a folder tree as 112×112 PNG crops")
    align.add_argument("source", help="folder of images (searched recursively)")
    align.add_argument("destination", help="folder to write crops and alignment.csv into")
    align.add_argument("--select", choices=["confidence", "largest", "all"], default="confidence")
    align.add_argument("--landmarks", help="CSV of given landmarks: path, x1, y1, ... (10 or 4 coordinates)")
    align.add_argument("--twins", help="folder of pixel-registered visible images whose landmarks align these")
    align.add_argument(
        "--min-face-size",
        type=int,
        help="smallest face to detect, in pixels (default: the detector's own, 20 for MTCNN)",
    )
    align.add_argument("--size", type=int, default=112, help="side of the aligned crops")
    add_spectrum_options(align)
    align.set_defaults(func=cmd_align)

    embed = commands.add_parser("embed", help="embed images (files or folders) into an .npz or .safetensors file")
    embed.add_argument("images", nargs="+", help="image files or folders")
    add_model_options(embed)
    embed.add_argument(
        "--output",
        required=True,
        help="embeddings.npz or embeddings.safetensors, or a folder: resumable shards for `hfr-hf enroll` (images "
        "then a folder per person or a CSV)",
    )
    embed.add_argument("--shard-size", type=int, default=1024, help="images per shard (--output FOLDER)")
    embed.add_argument("--batch-size", type=int, default=64)
    embed.add_argument("--raw", action="store_true", help="keep the raw embeddings (default: L2-normalised)")
    embed.set_defaults(func=cmd_embed)

    def add_gallery_model_options(sub: argparse.ArgumentParser, required: bool, spectrum: bool = True) -> None:
        add_model_options(sub, required, spectrum)
        sub.add_argument(
            "--adapter", help="xEdgeFace adapter folder" + ("" if required else " (default: the gallery's)")
        )
        sub.add_argument("--gallery", required=True, help="gallery folder")
        sub.add_argument("--batch-size", type=int, default=64)

    enroll = commands.add_parser("enroll", help="enrol faces into a gallery (created when missing)")
    enroll.add_argument(
        "images",
        help="folder with one subfolder of images per person, a CSV: identity,path[,spectrum], or a shard folder "
        "(hfr-hf embed --output FOLDER, scripts/embed.py)",
    )
    add_gallery_model_options(enroll, required=False, spectrum=False)
    enroll.add_argument(
        "--spectrum",
        default="visible",
        help="spectrum recorded for the images (visible, thermal, nir); with --detector, thermal and nir images "
        "are found and checked by it",
    )
    enroll.add_argument("--fusion", choices=["max", "mean"], default="max", help="per-person score of a new gallery")
    enroll.add_argument("--skip-unusable", action="store_true", help="enrol the rest when some images fail alignment")
    enroll.set_defaults(func=cmd_enroll)

    gallery = commands.add_parser("gallery", help="list or remove the people of a gallery, or calibrate its threshold")
    gallery.add_argument("action", choices=["list", "remove", "calibrate"])
    gallery.add_argument("names", nargs="*", help="remove: people to remove; calibrate: images of non-enrolled people")
    add_gallery_model_options(gallery, required=False)
    gallery.add_argument("--images", action="store_true", help="list: one line per enrolled image")
    gallery.add_argument(
        "--fpir", type=float, default=0.01, help="calibrate: target false positive identification rate"
    )
    gallery.set_defaults(func=cmd_gallery)

    identify = commands.add_parser("identify", help="rank the enrolled people closest to each probe image")
    identify.add_argument("probes", nargs="+", help="image files or folders")
    add_gallery_model_options(identify, required=False)
    identify.add_argument("--top-k", type=int, default=5)
    identify.add_argument("--fusion", choices=["max", "mean"], help="per-person score (default: the gallery's)")
    decision = identify.add_mutually_exclusive_group()
    decision.add_argument("--fpir", type=float, help="'not enrolled' below the calibrated threshold for this FPIR")
    decision.add_argument("--threshold", type=float, help="'not enrolled' below this score")
    identify.add_argument("--output", help="results.csv or results.json (default: CSV on stdout)")
    identify.set_defaults(func=cmd_identify)

    verify = commands.add_parser("verify", help="cosine similarity of the faces in two images")
    verify.add_argument("image_a")
    verify.add_argument("image_b")
    add_model_options(verify)
    verify.add_argument("--threshold", type=float, help="decide same/different person at this cosine")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.add_argument(
        "--no-face-check",
        action="store_true",
        help="score crops that the detector of --spectrum does not take for faces; blank images are refused all "
        "the same",
    )
    verify.set_defaults(func=cmd_verify)

    folder = commands.add_parser(
        "verify-folder", help="genuine vs impostor scores over all pairs of a folder with one sub-folder per person"
    )
    folder.add_argument("root")
    add_model_options(folder)
    folder.add_argument("--batch-size", type=int, default=64)
    folder.add_argument("--json", help="write the summary to this JSON file")
    folder.set_defaults(func=cmd_verify_folder)

    evaluate = commands.add_parser(
        "evaluate", help="verification / identification metrics of a protocol CSV, with report, plots, score files"
    )
    add_model_options(evaluate)
    evaluate.add_argument("--adapter", help="PEFT adapter folder to apply to the model (needs hfr-hf[train])")
    evaluate.add_argument(
        "--protocol", required=True, help="CSV: path_a,path_b,label (verification) or path,identity,modality,split"
    )
    evaluate.add_argument("--root", required=True, help="folder the protocol's image paths are relative to")
    evaluate.add_argument("--report", required=True, help="JSON report to write")
    evaluate.add_argument("--plots", help="folder for roc.png, det.png (and cmc.png for identification)")
    evaluate.add_argument("--scores", help="bob score file: name.csv (CSV format) or any other name (4-column)")
    evaluate.add_argument("--cache", help="embedding cache .npz, reused while model and alignment are unchanged")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--bootstrap", type=int, default=0, help="resamples for 95%% confidence intervals")
    evaluate.set_defaults(func=cmd_evaluate)

    experiment = commands.add_parser(
        "experiment",
        help="the pseudo-thermal xEdgeFace experiment: protocol, frozen vs adapted, report, adapter, plots",
    )
    experiment.add_argument("--model", required=True, help="converted EdgeFace folder (from `hfr-hf convert`)")
    experiment.add_argument("--att", help="AT&T faces (sN/K.pgm)")
    experiment.add_argument("--yale", help="Yale faces (subjectNN.condition)")
    experiment.add_argument("--output", required=True, help="folder for protocol, adapter, report.json, plots")
    experiment.add_argument(
        "--thermal", help="real LWIR faces (the folder holding puj_t360/ and puj_fone/): real-thermal measures too"
    )
    experiment.add_argument(
        "--detector", help="cross-spectral detector that aligns the --thermal images (default: resize them)"
    )
    experiment.add_argument(
        "--preset",
        default=None,
        help="adapter preset (see hfr_hf.adapters.ADAPTER_PRESETS), or auto: search presets and learning rates on "
        "the validation identities (with --thermal, its PUJ validation people too), then train the best",
    )
    experiment.add_argument("--adapter-name", default="thermal", help="name of the PEFT adapter")
    experiment.add_argument("--epochs", type=int, help="training epochs (default: the experiment's)")
    experiment.add_argument("--learning-rate", type=float, help="AdamW learning rate (default: the preset's)")
    search = experiment.add_argument_group("preset search (--preset auto)")
    search.add_argument(
        "--auto-budget",
        type=float,
        metavar="SECONDS",
        help="wall-clock budget of the search (600; with --thermal 1200, on XS 1800)",
    )
    search.add_argument(
        "--auto-epochs",
        type=int,
        metavar="N",
        help="first epochs of the run's schedule that each candidate trains (1; with --thermal 3)",
    )
    search.add_argument(
        "--auto-finalists",
        type=int,
        metavar="N",
        help="best candidates continued to --epochs and chosen on that (3; below 2: none)",
    )
    search.add_argument(
        "--auto-presets", metavar="P1,P2,...", help="presets the search tries (default: every preset, full included)"
    )
    real = experiment.add_argument_group(
        "unpaired real thermal faces in training (with --thermal, its PUJ train people by default)"
    )
    real.add_argument(
        "--real-target-data",
        metavar="FOLDER",
        help="real thermal faces with identities, no visible twins: the folder holding puj_t360/ and puj_fone/ "
        "(only the PUJ split's train people are read) or a folder of <identity>/ sub-folders (default: --thermal)",
    )
    real.add_argument(
        "--no-real-target-data",
        action="store_true",
        help="train on the pseudo pairs alone (the renders; the README shows what that does to real thermal faces)",
    )
    real.add_argument(
        "--target-identity-weight", type=float, metavar="W", help="weight of the real target identity term (0.2)"
    )
    real.add_argument("--alignment-weight", type=float, metavar="W", help="weight of mean + covariance alignment (0.5)")
    real.add_argument("--target-temperature", type=float, metavar="T", help="temperature of the identity term (0.1)")
    real.add_argument("--real-target-batch-size", type=int, metavar="N", help="real images per step (32)")
    experiment.add_argument(
        "--self-distillation-weight",
        type=float,
        metavar="W",
        help="weight of the term that keeps visible embeddings where the frozen model puts them (3 with real "
        "thermal faces in training, 10 on XS; 1 without)",
    )
    for name, what in (
        ("contrastive", "the pseudo pairs' contrastive alignment"),
        ("cross-distillation", "the renders' pull onto the frozen visible embeddings"),
    ):
        experiment.add_argument(
            f"--{name}-weight", type=float, metavar="W", help=f"weight of {what} (3 with real thermal faces, 1 without)"
        )
    experiment.add_argument("--seed", type=int, default=0)
    experiment.set_defaults(func=cmd_experiment)

    push = commands.add_parser(
        "push", help="publish a model, an adapter, a merged model or the Space to the Hugging Face Hub (or --dry-run)"
    )
    push.add_argument("repo_id", help="Hub repository to create or update, namespace/name")
    source = push.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="converted model folder (the base, with --adapter)")
    source.add_argument("--space", help="Space folder (app.py, requirements.txt, README.md) to upload as a Space")
    source.add_argument("--detector", help="cross-spectral detector folder (hfr-hf train-detector) to upload")
    push.add_argument("--adapter", help="adapter folder (hfr_hf.adapters.save_adapter): push the adapter repository")
    push.add_argument("--merge", action="store_true", help="with --adapter: push EdgeFace with the adapter merged in")
    push.add_argument("--base-repo", help="Hub repository of the base model (required with --adapter)")
    push.add_argument("--report", help="evaluation report JSON (hfr-hf experiment / evaluate) for the card's results")
    push.add_argument("--model-repo", action="append", help="with --space: model repository the Space loads")
    push.add_argument(
        "--no-space-variable", action="store_true", help="with --space: do not set the Space variable HFR_HF_MODEL"
    )
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--revision", help="branch to commit to (created when missing; default main)")
    push.add_argument("--token", help="Hub token (default: HF_TOKEN or the login cache of `hf auth login`)")
    push.add_argument("--commit-message", help="message of the commit")
    push.add_argument("--dry-run", metavar="DIR", help="write the files that would be pushed into DIR; push nothing")
    push.set_defaults(func=cmd_push)

    export = commands.add_parser("export-onnx", help="model folder (+ adapter, merged) -> ONNX file, parity checked")
    export.add_argument("model_dir", help="model folder (from `hfr-hf convert`) or Hub repo id")
    export.add_argument("--output", required=True, help="the .onnx file to write")
    export.add_argument("--adapter", help="xEdgeFace adapter folder to merge into the model first")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset, 18 or later (default 18)")
    export.add_argument(
        "--no-optimize",
        action="store_true",
        help="skip the graph simplification (layer scales folded, onnxscript's optimizer)",
    )
    export.set_defaults(func=cmd_export_onnx)

    quantize = commands.add_parser(
        "quantize", help="int8 ONNX model, layers chosen to keep the embeddings close to the float ones"
    )
    quantize.add_argument("model", help="float .onnx file from `hfr-hf export-onnx`")
    quantize.add_argument("--output", required=True, help="the int8 .onnx file to write")
    quantize.add_argument(
        "--calibration", help="folder of aligned faces (needed by static; smooths and checks dynamic)"
    )
    quantize.add_argument(
        "--method",
        choices=["dynamic", "static"],
        default="dynamic",
        help="dynamic: MatMul layers, activations quantised at run time (fastest); static: Conv/MatMul/Gemm, QDQ",
    )
    quantize.add_argument(
        "--min-cosine", type=float, default=0.995, help="smallest cosine to the float embeddings on calibration faces"
    )
    quantize.add_argument("--max-images", type=int, default=128, help="calibration faces used at most")
    quantize.add_argument("--format", choices=["qdq", "qoperator"], default="qdq", help="static quantised format")
    quantize.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)"
    )
    quantize.add_argument(
        "--smoothing", type=float, default=0.5, help="SmoothQuant alpha: range moved from activations to weights"
    )
    quantize.add_argument("--no-smoothing", action="store_true", help="quantise the graph as exported")
    quantize.set_defaults(func=cmd_quantize)

    train_detector = commands.add_parser(
        "train-detector",
        help="train the cross-spectral face detector on thermal/NIR renders of visible photos",
    )
    train_detector.add_argument("images", nargs="+", help="folders of visible photos with one face each (recursive)")
    train_detector.add_argument(
        "--output", required=True, help="folder for config.json, model.safetensors, report.json"
    )
    train_detector.add_argument(
        "--exclude", action="append", default=[], help="glob of images kept out of training (repeatable)"
    )
    train_detector.add_argument(
        "--negatives",
        action="append",
        default=[],
        help="folder of face-free photos cut into face-free scenes and backgrounds (repeatable; "
        "scripts/face_free_photos.py writes scikit-image's)",
    )
    train_detector.add_argument("--landmark-weight", type=float, help="weight of O-Net's landmark loss (default 1)")
    train_detector.add_argument(
        "--mined-renders",
        type=int,
        help="scenes per photo whose tuned-P-Net proposals give R-Net and O-Net hard samples (default 0)",
    )
    train_detector.add_argument(
        "--bootstrap-scenes",
        type=int,
        help="face-free scenes whose windows the tuned P-Net and R-Net still pass become O-Net negatives (default 0)",
    )
    train_detector.add_argument(
        "--real-thermal",
        metavar="FOLDER",
        help="folder holding the PUJ sets: the real LWIR images of the split's train people join training, "
        "pseudo-labelled by --labeller (self-training)",
    )
    train_detector.add_argument("--labeller", metavar="DETECTOR", help="detector whose faces label --real-thermal")
    train_detector.add_argument(
        "--thresholds",
        nargs=3,
        type=float,
        metavar=("P", "R", "O"),
        help="P-Net, R-Net, O-Net thresholds saved with the detector (default 0.6 0.7 0.7)",
    )
    train_detector.add_argument(
        "--mirror-average", action="store_true", help="save the detector to average O-Net on each face's mirror"
    )
    train_detector.add_argument(
        "--scale-factor", type=float, help="P-Net's pyramid step saved with the detector (default 0.6; MTCNN 0.709)"
    )
    train_detector.add_argument(
        "--reference-pyramid",
        action="store_true",
        help="save the detector to build P-Net's pyramid from the full image, as MTCNN (slower; default: halvings)",
    )
    train_detector.add_argument("--renders-per-image", type=int, help="scenes rendered from each photo")
    train_detector.add_argument("--negative-scenes", type=int, help="face-free scenes among the renders")
    train_detector.add_argument("--epochs", type=int, help="passes over the samples, per network")
    train_detector.add_argument(
        "--networks",
        nargs="+",
        choices=["pnet", "rnet", "onet", "lnet"],
        help="networks to tune (default pnet rnet onet); lnet alone, with --init: the landmark network of thermal "
        "faces, trained from that detector's O-Net on white-hot renders",
    )
    train_detector.add_argument(
        "--init", metavar="DETECTOR", help="detector whose networks and settings training starts from and keeps"
    )
    train_detector.add_argument("--learning-rate", type=float, help="peak learning rate (default 1e-3)")
    train_detector.add_argument("--seed", type=int, help="seed of the renders and of training")
    train_detector.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    train_detector.set_defaults(func=cmd_train_detector)
    return parser


# Commands that save no model folder: they need no auto_map, and skipping its registration spares them importing
# transformers (seconds), which loading a plain model folder does without (`hfr_hf.inference.load_model`).
_WRITE_NO_MODEL = {"align", "embed", "enroll", "gallery", "identify", "verify", "verify-folder", "evaluate"}


def main(argv: list[str] | None = None) -> int:
    from .images import UnusableImagesError

    args = build_parser().parse_args(argv)
    try:
        if args.command not in _WRITE_NO_MODEL:
            from . import register_auto_classes

            register_auto_classes()  # past --help: saved folders must carry auto_map and the remote-code files
        return args.func(args)
    except UnusableImagesError as error:
        print(
            f"hfr-hf {args.command}: error: {error} Align them from landmarks first (hfr-hf align --landmarks), or "
            "pass --no-align if they are tight face crops to be resized as they are"
            + (", or --skip-unusable to enrol the others." if args.command == "enroll" else "."),
            file=sys.stderr,
        )
        return 1
    except (ValueError, OSError) as error:  # user-facing problems: one sentence, no traceback
        print(f"hfr-hf {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
