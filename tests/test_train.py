"""``inception-kernels train`` and ``evaluate`` (inception_kernels/tools): outputs, resume, torchrun
DDP against one process, checkpoints <-> torchvision, the paper's 144 test crops, and clear
errors for bad input.

Kept CPU-fast: tiny PNG ImageFolders in temporary folders, 32x32 crops (the paper variant
without aux heads needs >= 31), the reference backend (a whole GoogLeNet step through Triton's
interpreter takes over a minute here; the Triton wiring is checked with a spy, and for real on
a GPU), a few steps per run.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import inception_kernels as ik
from inception_kernels.tools import checkpoint, cli, data, evaluate, train

torchvision = pytest.importorskip("torchvision")
Image = pytest.importorskip("PIL.Image")

REPO = Path(ik.__file__).resolve().parent.parent
SIZE = 32  # crop side: the paper variant without aux heads accepts >= 31
CLASSES = ("ant", "bee", "cat")
#: Flags every training run here shares: small, fast, deterministic.
FAST = ["--image-size", str(SIZE), "--no-aux", "--workers", "0", "--backend", "reference", "--device", "cpu"]
#: The same for evaluate.
EVAL_FAST = ["--workers", "0", "--backend", "reference", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these tensors are tiny, and on a busy 2-core machine OpenMP's waiting
    threads made a train step of this file 5-20x slower with 2 threads than with 1 (measured:
    0.15 s vs 0.5-5 s at load average 6-8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _png(path: Path, w: int, h: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.numpy()).save(path)


def _folder(root: Path, per_class: dict, classes=CLASSES) -> Path:
    """An ImageFolder root: ``per_class`` maps a split to the images per class."""
    seed = 0
    for split, n in per_class.items():
        for c in classes:
            for i in range(n):
                seed += 1
                _png(root / split / c / f"{i}.png", 36 + 4 * (seed % 3), 40 - 3 * (seed % 2), seed)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 classes: 4 training images each (3 steps of 4 per epoch), 2 validation images each."""
    return _folder(tmp_path_factory.mktemp("data"), {"train": 4, "val": 2})


def _run(argv) -> train.TrainResult:
    return train.train(train.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def paper_run(folder, tmp_path_factory):
    """2 epochs of 2 steps, fused (reference backend), EMA on, LR halved every epoch."""
    out = tmp_path_factory.mktemp("paper_run")
    result = _run([*FAST, "--data", folder, "--epochs", 2, "--batch-size", 6, "--lr-step-epochs", 1, "--lr-gamma", 0.5,
                   "--ema", 0.9, "--out", out])
    return result, out


def _read_metrics(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------- train


def test_train_writes_checkpoint_metrics_and_curves(paper_run, capsys):
    result, out = paper_run
    assert (result.epoch, result.step) == (2, 4)
    assert all(type(m) is ik.FusedInception for m in result.model.inceptions().values())
    rows = _read_metrics(out / "metrics.csv")
    assert list(rows[0]) == list(train.METRICS)
    assert [(r["epoch"], r["step"], float(r["lr"])) for r in rows] == [("1", "2", 0.01), ("2", "4", 0.005)]
    for r in rows:
        assert float(r["loss"]) > 0 and float(r["images_per_s"]) > 0 and float(r["seconds"]) > 0
        assert 0 <= float(r["top1"]) <= float(r["top5"]) <= 100 and r["ema_top1"] != ""
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    ck = torch.load(out / "checkpoint.pt", weights_only=True)  # plain types and tensors only
    assert set(checkpoint.KEYS) <= set(ck)
    assert (ck["epoch"], ck["step"], ck["variant"], ck["num_classes"]) == (2, 4, "paper", 3)
    assert ck["classes"] == list(CLASSES)
    assert ck["args"]["batch_size"] == 6 and ck["args"]["lr_gamma"] == 0.5 and isinstance(ck["args"]["data"], str)
    assert ck["scheduler"]["last_epoch"] == 2 and ck["history"][1]["lr"] == 0.005
    assert _state_equal(ck["model"], result.model.state_dict())
    assert _state_equal(ck["ema"], result.ema.state_dict()) and ck["ema_n_averaged"] == 4
    assert not _state_equal(ck["ema"], ck["model"])
    # Fused blocks keep the unfused keys: the checkpoint loads strictly into the plain model.
    plain = ik.googlenet("paper", num_classes=3, aux_logits=False, init_weights=False)
    plain.load_state_dict(ck["model"])
    x = torch.randn(2, 3, SIZE, SIZE)
    torch.testing.assert_close(plain.eval()(x), result.model.eval()(x))


def test_resume_continues_like_an_uninterrupted_run(paper_run, folder, tmp_path):
    """1 epoch, then --resume to 2 in the same --out: the same model, EMA, optimizer state, schedule
    and metrics as the 2-epoch run (data order, augmentation and dropout are seeded per epoch)."""
    full, full_out = paper_run
    args = [*FAST, "--data", folder, "--batch-size", 6, "--lr-step-epochs", 1, "--lr-gamma", 0.5, "--ema", 0.9]
    first = _run([*args, "--epochs", 1, "--out", tmp_path / "a"])
    assert (first.epoch, first.step) == (1, 2)
    first_rows = _read_metrics(tmp_path / "a" / "metrics.csv")
    resumed = _run([*args, "--epochs", 2, "--out", tmp_path / "a", "--resume", tmp_path / "a" / "checkpoint.pt"])
    assert (resumed.epoch, resumed.step) == (2, 4)
    assert _state_equal(resumed.model.state_dict(), full.model.state_dict())
    assert _state_equal(resumed.ema.state_dict(), full.ema.state_dict())
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(full_out / "checkpoint.pt", weights_only=True)
    assert a["scheduler"] == b["scheduler"]
    assert all(torch.equal(a["optimizer"]["state"][i]["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
               for i in b["optimizer"]["state"])
    rows = _read_metrics(tmp_path / "a" / "metrics.csv")
    assert [(r["epoch"], r["step"], r["lr"]) for r in rows] == [("1", "2", "0.01"), ("2", "4", "0.005")]
    assert rows[0] == first_rows[0] and len(first_rows) == 1


#: A test hook that Python imports at start-up (sitecustomize on PYTHONPATH): in torchrun's workers
#: (RANK set) it saves each replica's parameters after train(), which only rank 0 writes otherwise.
_RANK_DUMP = """
import os
if os.environ.get("RANK") is not None:
    import torch
    from inception_kernels.tools import train

    run = train.train

    def keep(args):
        result = run(args)
        torch.save(result.model.state_dict(), os.path.join(args.out, "rank" + os.environ["RANK"] + ".pt"))
        return result

    train.train = keep
"""


def test_torchrun_two_processes_step_like_one_process(folder, tmp_path):
    """``torchrun --nproc_per_node=2 -m inception_kernels train`` (gloo, DDP, DistributedSampler) with
    2 images per process ends with equal replicas, equal to one process with a batch of 4: the same
    samples per step (the sampler's order, per-sample seeded augmentation), no dropout (its masks
    are per process)."""
    common = [*FAST, "--data", folder, "--max-steps", 2, "--dropout", 0, "--ema", 0, "--lr", 0.05]
    single = _run([*common, "--batch-size", 4, "--out", tmp_path / "single"])
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(_RANK_DUMP)
    path = [str(tmp_path / "hook"), str(REPO), os.environ.get("PYTHONPATH", "")]
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "inception_kernels", "train", *map(str, common), "--batch-size", "2", "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=400, env=dict(os.environ, PYTHONPATH=os.pathsep.join(path)), cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 process(es) on cpu, batch 2 per process" in res.stdout
    assert res.stdout.count("epoch 1/250  step 2") == 1  # rank 0 alone prints
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    assert _state_equal(rank0, rank1)  # DDP: identical replicas
    assert _state_equal(torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"], rank0)
    torch.manual_seed(0)  # the init every run starts from (train seeds --seed 0 before building)
    init = ik.googlenet("paper", num_classes=3, aux_logits=False).state_dict()
    one = single.model.state_dict()
    moved = max((one[k] - init[k]).abs().max().item() for k in one)
    diff = max((one[k] - rank0[k]).abs().max().item() for k in one)
    assert moved > 1e-3, moved  # the comparison below is not trivially met
    assert diff < 1e-5 * moved, (diff, moved)  # one process == two, up to the order of sums
    loss_1 = float(_read_metrics(tmp_path / "single" / "metrics.csv")[0]["loss"])
    loss_2 = float(_read_metrics(tmp_path / "ddp" / "metrics.csv")[0]["loss"])
    assert loss_2 == pytest.approx(loss_1, rel=1e-5)


def _torchvision_file(path: Path, num_classes=1000, aux=True) -> dict:
    torch.manual_seed(1)
    tv = torchvision.models.googlenet(weights=None, num_classes=num_classes, aux_logits=aux, init_weights=True)
    state = tv.state_dict()
    torch.save(state, path)
    return state


def _loads_into_torchvision(ck: dict) -> None:
    tv = torchvision.models.googlenet(weights=None, num_classes=ck["num_classes"], aux_logits=ck["aux_logits"],
                                      init_weights=False, transform_input=ck["transform_input"])
    tv.load_state_dict(ck["model"])  # strict
    ours, _ = checkpoint.build(ck, "model", aux_logits=False)
    x = torch.randn(2, 3, SIZE, SIZE)
    torch.testing.assert_close(ours(x), tv.eval()(x))


def test_init_from_torchvision_and_back(folder, tmp_path, capsys):
    """Start from a torchvision state_dict (1000 classes: the classifiers are re-initialized for 3);
    the checkpoint loads strictly into torchvision.models.googlenet and computes what it computes
    (with --sync-bn, which converts BatchNorm on one process and changes no key); evaluate folds
    its BatchNorm into the fused blocks and scores it as the plain model."""
    tv_state = _torchvision_file(tmp_path / "tv.pth")
    result = _run([*FAST, "--data", folder, "--variant", "torchvision", "--no-fuse", "--init-from-torchvision",
                   tmp_path / "tv.pth", "--aux", "--sync-bn", "--max-steps", 1, "--lr", 0, "--ema", 0,
                   "--batch-size", 4, "--out", tmp_path / "out"])
    out = capsys.readouterr().out
    assert "fc.weight: (1000, 1024) in the file, (3, 1024) here" in out
    assert isinstance(result.model.conv1.bn, torch.nn.SyncBatchNorm)
    ck = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert ck["transform_input"] is True and ck["aux_logits"] is True
    params = dict(result.model.named_parameters())
    for k, v in params.items():  # lr 0: every parameter is the file's, except the new classifiers
        if k.startswith(checkpoint.HEAD_PREFIXES):
            assert v.shape[0] == 3
        else:
            assert torch.equal(v, tv_state[k]), k
    _loads_into_torchvision(ck)
    scores = []
    for fused in ([], ["--no-fuse"]):
        assert cli.main(["evaluate", "--data", str(folder), "--checkpoint", str(tmp_path / "out" / "checkpoint.pt"),
                         *EVAL_FAST, "--json", str(tmp_path / "r.json"), *fused]) == 0
        scores.append(json.loads((tmp_path / "r.json").read_text()))
    assert "scoring its plain weights" in capsys.readouterr().out  # --ema 0: no average to score
    assert (scores[0]["top1"], scores[0]["top5"]) == (scores[1]["top1"], scores[1]["top5"])


def test_torchvision_variant_trains_fused(folder, tmp_path):
    """The torchvision variant trains with fused blocks (BatchNorm in training mode, issue 12), and
    its checkpoint still loads strictly into torchvision.models.googlenet."""
    result = _run([*FAST, "--data", folder, "--variant", "torchvision", "--aux", "--max-steps", 2, "--batch-size", 4,
                   "--out", tmp_path])
    assert all(type(m) is ik.FusedInception for m in result.model.inceptions().values())
    _loads_into_torchvision(torch.load(tmp_path / "checkpoint.pt", weights_only=True))


def test_torchvision_fused_from_torchvision_weights(folder, tmp_path):
    """--init-from-torchvision with fused training: the fused model starts from the file's weights."""
    tv_state = _torchvision_file(tmp_path / "tv.pth", num_classes=3, aux=False)
    result = _run([*FAST, "--data", folder, "--variant", "torchvision", "--init-from-torchvision", tmp_path / "tv.pth",
                   "--max-steps", 1, "--lr", 0, "--ema", 0, "--batch-size", 4, "--out", tmp_path / "out"])
    params = dict(result.model.named_parameters())
    assert all(torch.equal(params[k], tv_state[k]) for k in params)


def test_amp_fp16_scaler_and_bf16_channels_last(folder, tmp_path):
    """--amp fp16 steps through a GradScaler (its state is checkpointed); bf16 with channels_last runs."""
    _run([*FAST, "--data", folder, "--max-steps", 1, "--batch-size", 4, "--amp", "fp16", "--ema", 0,
          "--out", tmp_path / "a"])
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert ck["scaler"]["scale"] > 0 and ck["args"]["amp"] == "fp16"
    assert all(v.dtype == torch.float32 for v in ck["model"].values())  # fp32 master weights
    result = _run([*FAST, "--data", folder, "--max-steps", 1, "--batch-size", 4, "--amp", "bf16", "--channels-last",
                   "--ema", 0, "--out", tmp_path / "b"])
    assert result.model.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["scaler"] == {}  # bf16: no scaler
    assert float(_read_metrics(tmp_path / "b" / "metrics.csv")[0]["loss"]) > 0


def test_backend_and_compile_flags_reach_the_model(tmp_path, monkeypatch):
    """--backend reaches every fused block's op call, --compile wraps the training forward; on
    --data synthetic (the default: generated images, no files).

    Wiring only: the op runs on the reference path here because a whole GoogLeNet step through
    Triton's interpreter takes over a minute on this machine; test_train_triton_gpu runs it."""
    from inception_kernels import modules

    seen, compiled = [], []
    real = modules.fused_inception

    def spy(*args, backend, **kw):
        seen.append(backend)
        return real(*args, backend="reference", **kw)

    monkeypatch.setattr(modules, "fused_inception", spy)
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the Triton backend's device here
    result = _run([*FAST, "--max-steps", 1, "--batch-size", 2, "--synthetic-images", 4, "--num-classes", 5,
                   "--ema", 0, "--compile", "--out", tmp_path, "--backend", "triton", "--device", device])
    assert len(seen) == 9 * (1 + 1) and set(seen) == {"triton"}  # 9 blocks: 1 step, 1 validation batch
    assert len(compiled) == 1 and isinstance(compiled[0], ik.GoogLeNet)
    assert result.step == 1 and result.model.fc.out_features == 5
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["classes"] == ["0", "1", "2", "3", "4"]


@pytest.mark.gpu
def test_train_triton_gpu(folder, tmp_path):
    """On a GPU: fused Triton training steps like the reference backend (fp32, same seeds)."""
    losses = []
    for backend in ("reference", "triton"):
        _run([*FAST, "--data", folder, "--max-steps", 2, "--batch-size", 4, "--dropout", 0, "--ema", 0,
              "--out", tmp_path / backend, "--backend", backend, "--device", "cuda"])
        losses.append(float(_read_metrics(tmp_path / backend / "metrics.csv")[0]["loss"]))
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact and no temporary file."""
    path = tmp_path / "checkpoint.pt"
    ck = {k: None for k in checkpoint.KEYS} | {"format": checkpoint.FORMAT, "version": 1, "epoch": 1}
    checkpoint.save(ck, path)
    before = path.read_bytes()

    def crash(obj, f, *args, **kw):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(ck | {"epoch": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 1


# ------------------------------------------------------------------------------- evaluate


def _coords_image(w: int, h: int):
    """An image whose pixels encode their position (R = x, G = y, B = x * y mod 256)."""
    x = torch.arange(w).view(1, w).expand(h, w)
    y = torch.arange(h).view(h, 1).expand(h, w)
    return Image.fromarray(torch.stack([x % 256, y % 256, (x * y) % 256], -1).to(torch.uint8).numpy())


def test_ten_crops_match_torchvision():
    img = _coords_image(53, 41)
    crops = data.eval_crops(img, 24, 10)
    resized = torchvision.transforms.functional.resize(img, data.resize_size(24))
    expect = [torchvision.transforms.functional.pil_to_tensor(c) for c in torchvision.transforms.TenCrop(24)(resized)]
    assert crops.dtype == torch.uint8 and crops.shape == (10, 3, 24, 24)
    assert torch.equal(crops, torch.stack(expect))
    one = data.eval_crops(img, 24, 1)
    assert torch.equal(one[0], torchvision.transforms.functional.pil_to_tensor(
        torchvision.transforms.CenterCrop(24)(resized)))


@pytest.mark.parametrize("w, h", [(71, 50), (45, 61)])  # landscape, portrait; each with an odd center offset
def test_144_crops_are_the_papers(w, h):
    """4 scales (shorter side 256/288/320/352 x size/224) x 3 squares (left, center, right; top,
    center, bottom for portrait) x 6 crops (4 corners, center, the whole square resized) x 2
    mirrors, in that order, re-derived here with explicit pixel offsets (a center offset of x.5
    rounds half to even, as torchvision's center_crop)."""
    size = 28
    F = torchvision.transforms.functional
    img = _coords_image(w, h)
    crops = data.eval_crops(img, size, 144)
    assert crops.shape == (144, 3, size, size)
    assert data.paper_scales(224) == [256, 288, 320, 352]
    i = 0
    for side in [round(size * s / 224) for s in (256, 288, 320, 352)]:
        t = F.pil_to_tensor(F.resize(img, side))
        H, W = t.shape[1:]
        assert min(H, W) == side
        for off in (0, round((max(H, W) - side) / 2), max(H, W) - side):
            sq = t[:, :, off:off + side] if W >= H else t[:, off:off + side, :]
            c = round((side - size) / 2)
            views = [sq[:, :size, :size], sq[:, :size, side - size:], sq[:, side - size:, :size],
                     sq[:, side - size:, side - size:], sq[:, c:c + size, c:c + size],
                     F.resize(sq, [size, size], antialias=True)]
            for v in views:
                assert torch.equal(crops[i], v), i
                assert torch.equal(crops[i + 1], v.flip(-1)), i + 1
                i += 2
    assert i == 144


def test_crop_and_model_average_is_a_real_average():
    """average_probabilities == a hand loop: softmax per crop and model, mean over crops, then models
    (chunks of 50 crops straddle images: 2 images x 144 crops)."""
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval() for _ in range(2)]
    crops = torch.randn(2, 144, 3, 8, 8) * 3
    got = evaluate.average_probabilities(models, crops, chunk=50)
    expect = torch.zeros(2, 5)
    for b in range(2):
        for m in models:
            for c in range(144):
                expect[b] += torch.softmax(m(crops[b, c:c + 1])[0], 0) / (144 * 2)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6)
    logits_first = sum(m(crops.flatten(0, 1)) for m in models).view(2, 144, 5).mean(1)
    assert not torch.allclose(got, torch.softmax(logits_first, 1))  # averaging logits would differ
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.0, 0.3], [0.9, 0.1, 0.2, 0.3, 0.4, 0.5]])
    assert evaluate.count_correct(scores, torch.tensor([1, 1])) == [0, 1]  # row 0: rank 2; row 1: rank 6


def _hand_scores(ck_paths, folder: Path, crops: int) -> tuple[float, float]:
    """Top-1/top-5 in % by a plain loop: each val image, each checkpoint's EMA model (unfused), each crop."""
    models = [checkpoint.build(checkpoint.load(p), "ema")[0] for p in ck_paths]
    ds = torchvision.datasets.ImageFolder(str(folder / "val"))
    hits = [0, 0]
    for img, label in ds:
        x = data.normalize(data.eval_crops(img, SIZE, crops))
        p = sum(torch.softmax(m(x), 1).mean(0) for m in models) / len(models)
        rank = (p > p[label]).sum().item()
        hits = [hits[0] + (rank < 1), hits[1] + (rank < 5)]
    return 100 * hits[0] / len(ds), 100 * hits[1] / len(ds)


@pytest.mark.parametrize("crops, models", [(10, 2), (144, 1)])
def test_evaluate_cli_matches_a_hand_loop(paper_run, folder, tmp_path, crops, models):
    """evaluate (fused, reference backend; crops batched across images, --batch-size not a multiple
    of the crops) gives the accuracies of a plain loop over images, unfused models and crops;
    --json has the documented keys."""
    _, out = paper_run
    paths = [out / "checkpoint.pt"]
    if models == 2:  # a second, different model
        ck = torch.load(paths[0], weights_only=True)
        torch.manual_seed(3)
        ck["ema"] = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ck["ema"].items()}
        paths.append(tmp_path / "other.pt")
        torch.save(ck, paths[1])
    ensemble = ["--ensemble", *map(str, paths[1:])] if models > 1 else []
    rc = cli.main(["evaluate", "--data", str(folder), "--checkpoint", str(paths[0]), *ensemble, "--crops", str(crops),
                   "--batch-size", "25" if crops == 10 else "100", *EVAL_FAST,
                   "--json", str(tmp_path / "r.json")])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert list(res) == list(evaluate.JSON_KEYS)
    assert (res["images"], res["crops"], res["models"]) == (6, crops, models) and res["seconds"] > 0
    top1, top5 = _hand_scores(paths, folder, crops)
    assert (res["top1"], res["top5"]) == pytest.approx((top1, top5))


# ---------------------------------------------------------------------------- bad input


def _train_error(argv, capsys) -> str:
    rc = cli.main(["train", *map(str, argv)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "inception-kernels train: error: " in err
    return err


@pytest.fixture
def bad_folders(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_train" / "val" / "a").mkdir(parents=True)
    (tmp_path / "no_classes" / "train").mkdir(parents=True)
    (tmp_path / "empty_class" / "train" / "a").mkdir(parents=True)
    (tmp_path / "not_a_dir").write_text("x")
    _folder(tmp_path / "two_classes", {"train": 2}, classes=("ant", "bee"))
    _folder(tmp_path / "renamed", {"train": 2}, classes=("ant", "bee", "cow"))
    _folder(tmp_path / "val_differs", {"train": 1}, classes=("ant", "bee"))
    _folder(tmp_path / "val_differs", {"val": 1}, classes=("ant", "cow"))
    return tmp_path


@pytest.mark.parametrize("folder, message", [
    ("missing", "--data {d}/missing: no such folder"),
    ("not_a_dir", "not a folder"),
    ("empty", "the folder is empty"),
    ("no_train", "no train/ folder (found val)"),
    ("no_classes", "Couldn't find any class folder"),
    ("empty_class", "Found no valid file for the classes a"),
    ("val_differs", "{d}/val_differs/train and {d}/val_differs/val name their classes differently (e.g. 'bee' vs "
                    "'cow')"),
])
def test_train_data_errors(bad_folders, capsys, folder, message):
    err = _train_error([*FAST, "--data", bad_folders / folder, "--out", bad_folders / "out"], capsys)
    assert message.format(d=bad_folders) in err


def test_undecodable_image_stops_with_its_name(paper_run, tmp_path, capsys):
    """Decision: an image that fails to decode stops the run with its name (it is not skipped), in
    train (in the main process and through a worker process) and in evaluate."""
    _folder(tmp_path, {"train": 1, "val": 1})
    broken = tmp_path / "train" / "bee" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for workers in ("0", "1"):  # 4 images, one batch of 4: the broken one is in it
        err = _train_error([*FAST, "--data", tmp_path, "--batch-size", 4, "--max-steps", 1, "--out", tmp_path / workers,
                            "--workers", workers], capsys)
        assert f"cannot decode {broken} (UnidentifiedImageError" in err
        assert "stops the run" in err
    broken = tmp_path / "val" / "cat" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff")
    rc = cli.main(["evaluate", "--data", str(tmp_path), "--checkpoint", str(paper_run[1] / "checkpoint.pt"),
                   *EVAL_FAST])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot decode {broken}" in err and "Traceback" not in err


def test_checkpoint_errors(paper_run, folder, bad_folders, tmp_path, capsys):
    ck = paper_run[1] / "checkpoint.pt"
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save(ik.googlenet("paper", num_classes=3, aux_logits=False).state_dict(), tmp_path / "state.pt")
    cases = [
        (["--resume", tmp_path / "nope.pt"], "--resume {t}/nope.pt: no such file"),
        (["--resume", tmp_path / "text.pt"], "--resume {t}/text.pt: cannot be read as a PyTorch file"),
        (["--resume", tmp_path / "state.pt"],
         "not a checkpoint written by inception-kernels train (it looks like a bare state_dict"),
        (["--resume", ck, "--variant", "torchvision", "--no-fuse"],
         "holds a paper GoogLeNet, but --variant is torchvision"),
        (["--resume", ck, "--data", bad_folders / "two_classes"], "has 3 classes, but the data has 2"),
        (["--resume", ck, "--data", bad_folders / "renamed"], "name their classes differently (e.g. 'cat' vs 'cow')"),
        (["--resume", ck, "--aux", "--image-size", 80], "has no aux heads; pass --no-aux"),
        (["--resume", ck, "--epochs", 2], "is at epoch 2, step 4: nothing left to do"),
        (["--out", paper_run[1]], "already holds checkpoint.pt; continue it with --resume"),
    ]
    for extra, message in cases:  # argparse: the later --data / --out win
        err = _train_error([*FAST, "--data", folder, "--out", tmp_path / "o", *extra], capsys)
        assert message.format(t=tmp_path) in err, (extra, err)


def test_evaluate_errors(paper_run, folder, bad_folders, capsys):
    _, out = paper_run
    for argv, message in [
        (["--data", bad_folders / "two_classes", "--split", "train"], "has 3 classes, but the data has 2"),
        (["--data", bad_folders / "no_train"], "Found no valid file for the classes a"),
        (["--data", bad_folders / "two_classes"], "no val/ folder"),
        (["--data", folder, "--image-size", 16], "--image-size 16 is below 31"),
    ]:
        rc = cli.main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), *EVAL_FAST, *map(str, argv)])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and message in err, (argv, err)


@pytest.mark.parametrize("argv, message", [
    (["--ema", "1.5"], "--ema must be in [0, 1) (0 turns it off), got 1.5"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--image-size", "20"], "--image-size 20 is below 31, the smallest input of the paper GoogLeNet without aux"),
    (["--init-from-torchvision", "x.pth"], "needs --variant torchvision, got --variant paper"),
    (["--sync-bn"], "--sync-bn: the paper variant has no BatchNorm"),
    (["--variant", "torchvision", "--sync-bn"], "--sync-bn needs --no-fuse"),
    (["--backend", "cuda"], "--backend cuda cannot run here: CUDA extension"),
    (["--device", "cuda"], "--device cuda: torch sees no CUDA device"),
])
def test_flag_errors(tmp_path, capsys, argv, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA may run on this machine")
    err = _train_error([*FAST, "--data", "synthetic", "--synthetic-images", "4", "--out", tmp_path, *argv], capsys)
    assert message in err, err


def test_init_from_torchvision_errors(tmp_path, capsys):
    torch.save(ik.googlenet("paper", num_classes=3, aux_logits=False).state_dict(), tmp_path / "paper.pt")
    (tmp_path / "list.pt").write_bytes(b"")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    for name, message in [("paper.pt", "is not a torchvision GoogLeNet state_dict (unexpected: "),
                          ("list.pt", "not a state_dict (a dict of tensors)")]:
        err = _train_error([*FAST, "--data", "synthetic", "--synthetic-images", "4", "--variant", "torchvision",
                            "--no-fuse", "--init-from-torchvision", tmp_path / name, "--out", tmp_path / "o"], capsys)
        assert message in err, err


def test_python_m_train_bad_input_has_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "inception_kernels", "train", "--data", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 2
    assert res.stderr.strip() == f"inception-kernels train: error: --data {tmp_path / 'nowhere'}: no such folder"
