import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from birdclef import features, models, train
from birdclef.pipeline import records


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A small synthetic dataset taken through preprocess and transform."""
    from conftest import make_work

    return make_work(tmp_path_factory.mktemp("trainwork"), recordings_per_species=4, test_soundscapes=0)


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_each_architecture_builds_and_takes_a_step(name):
    import tensorflow as tf
    import tf_keras as keras

    shape = features.mel_shape()
    model = models.build(name, shape, 32, 5)
    cfg = train.TrainConfig(data_path="", ckpt_dir="", loss="batch_hard+classify", jit_compile=False)
    opt = keras.optimizers.Adam(1e-3)
    step = train.make_train_step(model, opt, cfg)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((8, *shape)).astype(np.float32))
    y = tf.constant([0, 0, 1, 1, 2, 2, 3, 4], tf.int64)
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = float(step(x, y))
    assert np.isfinite(loss) and loss > 0
    assert int(opt.iterations.numpy()) == 1
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_weights))
    out = model(x, training=False)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"].numpy(), axis=1), 1.0, rtol=1e-4)
    assert out["logits"].shape == (8, 5)


def test_batch_hard_loss_matches_brute_force():
    rng = np.random.default_rng(1)
    e = rng.standard_normal((10, 4)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 1])
    expected = []
    for i in range(10):
        pos = [np.sum((e[i] - e[j]) ** 2) for j in range(10) if y[j] == y[i] and j != i]
        neg = [np.sum((e[i] - e[j]) ** 2) for j in range(10) if y[j] != y[i]]
        if pos:
            expected.append(max(0.0, max(pos) - min(neg) + 0.3))
    got = float(train.batch_hard_loss(e, y, 0.3))
    assert got == pytest.approx(np.mean(expected), rel=1e-4)  # anchor 8 (class 3) has no positive: left out


def test_chunk_tf_follows_the_chunking_rule():
    for n in (100, 64000, 64001, 96000, 96100, 32000 * 7 + 5):
        wave = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        chunks, starts = features.chunk_tf(wave)
        assert list(starts.numpy()) == features.chunk_starts(max(n, 64000))
        np.testing.assert_array_equal(chunks.numpy(), features.cut_chunks(wave))


def test_logmel_equals_a_numpy_reference_of_its_definition():
    """log(|STFT|^2 @ mel + 1e-6): periodic Hann, 1024-point frames every 320 samples, zero-padded
    past the chunk end, written out in numpy; and a tone lands in its own mel band."""
    cfg = features.DEFAULT_FEATURES
    rng = np.random.default_rng(3)
    t = np.arange(features.chunk_samples(cfg)) / cfg.sample_rate
    chunks = np.stack([0.1 * rng.standard_normal(len(t)), 0.5 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    got = features.logmel(chunks, cfg)
    n_frames = features.frames_per_chunk(cfg)
    padded = np.pad(chunks.astype(np.float64), [(0, 0), (0, (n_frames - 1) * cfg.hop_length + cfg.n_fft - len(t))])
    idx = np.arange(n_frames)[:, None] * cfg.hop_length + np.arange(cfg.n_fft)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)
    power = np.abs(np.fft.rfft(padded[:, idx] * window, axis=-1)) ** 2
    want = np.log(power @ features._mel_matrix(cfg).astype(np.float64) + 1e-6)
    assert got.shape == want.shape == (2, *features.mel_shape(cfg))
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)  # measured 1.1e-4; a symmetric window: 5.0
    centres = np.argmax(features._mel_matrix(cfg), axis=0) * cfg.sample_rate / cfg.n_fft
    assert abs(centres[np.argmax(got[1, 10])] - 3000) < 60


def test_waveform_logmel_of_exported_models_equals_the_per_chunk_definition():
    for n in (100, 64000, 64001, 96000, 96100, 32000 * 7 + 5, 32000 * 30):
        wave = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
        mel, starts = features.logmel_wave_tf(wave)
        chunks, want_starts = features.chunk_tf(wave)
        np.testing.assert_array_equal(starts.numpy(), want_starts.numpy())
        np.testing.assert_allclose(mel.numpy(), features.logmel(chunks.numpy()), atol=1e-5, rtol=0)


def test_shared_frame_logmel_equals_the_per_chunk_definition():
    """Stage 1 computes frames shared by overlapping chunks once; it must equal logmel of each chunk."""
    import dataclasses

    other = dataclasses.replace(features.DEFAULT_FEATURES, hop_length=300)  # chunk hop not whole frames
    assert features.shares_frames() and not features.shares_frames(other)
    for cfg in (features.DEFAULT_FEATURES, other):
        for n in (30000, 64000, 96000, 100000, 32000 * 40 + 777):
            wave = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
            chunks = features.cut_chunks(wave, cfg)
            starts = features.chunk_starts(max(n, 64000), cfg)
            got = features.logmel_chunks(starts, list(chunks), cfg)
            np.testing.assert_allclose(got, features.logmel(chunks, cfg), atol=1e-5, rtol=0)
    # a run split anywhere (batches of stage 1) gives the same mels
    cfg = features.DEFAULT_FEATURES
    wave = (0.1 * np.random.default_rng(0).standard_normal(32000 * 20)).astype(np.float32)
    chunks, starts = features.cut_chunks(wave, cfg), features.chunk_starts(len(wave), cfg)
    np.testing.assert_allclose(np.concatenate([features.logmel_chunks(starts[:7], list(chunks[:7]), cfg),
                                               features.logmel_chunks(starts[7:], list(chunks[7:]), cfg)]),
                               features.logmel(chunks, cfg), atol=1e-5, rtol=0)


def test_data_percent_is_stratified_by_recording(work):
    rec = train.read_recordings(work)
    half = train.select_recordings(rec, 50, 0)
    for (label, split), grp in rec.groupby(["label", "split"]):
        n = len(set(grp.recording_id) & half)
        assert n == max(1, int(np.ceil(len(grp) * 0.5))), (label, split)
    assert train.select_recordings(rec, 100, 0) == set(rec.recording_id)


def _ckpt_value(ckpt_dir, name):
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(f"{ckpt_dir}/ckpt")
    return int(tf.train.load_variable(latest, name))


def test_resume_continues_from_saved_epoch_and_optimizer(work, tmp_path):
    ckpt = str(tmp_path / "ck")
    cfg = train.TrainConfig(data_path=work, ckpt_dir=ckpt, batch_size=8, epochs=1, steps_per_epoch=2,
                            model="dilated_cnn", loss="triplet+classify", jit_compile=False)
    train.run(cfg, log=lambda s: None)
    assert _ckpt_value(ckpt, "epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert _ckpt_value(ckpt, "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 2
    logs = []
    import dataclasses

    train.run(dataclasses.replace(cfg, epochs=2), log=logs.append)
    assert any("resuming" in l and "after epoch 1" in l for l in logs)
    assert sum(l.startswith("train: epoch") for l in logs) == 1  # only epoch 2 ran
    assert _ckpt_value(ckpt, "epoch/.ATTRIBUTES/VARIABLE_VALUE") == 2
    assert _ckpt_value(ckpt, "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 4
    # the history of every epoch survives the resume, and a rerun of the finished command
    assert [h["epoch"] for h in json.load(open(f"{ckpt}/metrics.json"))["history"]] == [1, 2]
    train.run(dataclasses.replace(cfg, epochs=2), log=lambda s: None)
    assert [h["epoch"] for h in json.load(open(f"{ckpt}/metrics.json"))["history"]] == [1, 2]
    from birdclef.stages import StageConflict

    with pytest.raises(StageConflict, match="model"):
        train.run(dataclasses.replace(cfg, model="crnn"), log=lambda s: None)


def test_export_runs_without_birdclef_and_matches_training_model(work, tmp_path):
    import tensorflow as tf
    import tensorflow_transform as tft

    from birdclef import audio
    from birdclef.features import mel_shape

    ckpt = str(tmp_path / "ck")
    cfg = train.TrainConfig(data_path=work, ckpt_dir=ckpt, batch_size=8, epochs=1, steps_per_epoch=2,
                            loss="batch_hard+classify", jit_compile=False)
    metrics = train.run(cfg, log=lambda s: None)
    assert metrics["test"]["chunks"] > 0 and 0 <= metrics["test"]["knn_top1"] <= 1
    rec = train.read_recordings(work)
    path = rec[rec.split == "test"].path.iloc[0]
    wave = audio.load(path)
    np.save(tmp_path / "wave.npy", wave)

    code = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        m = tf.saved_model.load({str(tmp_path / 'ck' / 'export')!r})
        out = m.signatures["serving_default"](waveform=tf.constant(np.load({str(tmp_path / 'wave.npy')!r})))
        np.save({str(tmp_path / 'served.npy')!r}, out["embedding"].numpy())
        np.save({str(tmp_path / 'scores.npy')!r}, out["scores"].numpy())
        print(",".join(c.decode() for c in m.signatures["labels"]()["classes"].numpy()))
        assert not any(k.startswith("birdclef") for k in sys.modules), "birdclef was imported"
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].split(",") == json.load(open(f"{ckpt}/classes.json"))
    served = np.load(tmp_path / "served.npy")

    # training-time path: the one feature function, TFT's own transform, the trained weights
    mel = features.logmel(features.cut_chunks(wave))
    tf_out = tft.TFTransformOutput(f"{work}/transform/tft")
    n = len(mel)
    raw = {k: tf.constant([""] * n) for k in ("recording_id", "label", "labels", "split", "row_id")}
    raw["chunk_index"] = tf.zeros([n], tf.int64)
    raw["mel"] = tf.constant([m.astype(records.MEL_DTYPE).tobytes() for m in mel])  # as stage 1 stores it
    normed = records.stored_precision_tf(tf_out.transform_raw_features(raw)["mel"])  # as stage 2 stores it
    model = models.build(cfg.model, mel_shape(), cfg.embedding_dim, len(metrics["classes"]))
    model.load_weights(f"{ckpt}/best/weights")
    expected = model(normed, training=False)["embedding"].numpy()
    assert served.shape == expected.shape
    np.testing.assert_allclose(served, expected, atol=2e-4)
    scores = np.load(tmp_path / "scores.npy")  # independent sigmoids (multi-label)
    assert scores.shape == (n, len(metrics["classes"])) and ((scores >= 0) & (scores <= 1)).all()


def _n(ds):
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1).numpy())


def test_cache_dir_is_reused_while_the_data_is_the_same(work, tmp_path):
    import os

    cache = tmp_path / "cache"
    cfg = train.TrainConfig(data_path=work, ckpt_dir=str(tmp_path / "ck"), cache_dir=str(cache))
    first = _n(train.Data(cfg).chunks("train"))
    index = [f for f in os.listdir(cache) if f.endswith(".index")]
    assert len(index) == 1
    mtime = os.stat(cache / index[0]).st_mtime_ns
    assert _n(train.Data(cfg).chunks("train")) == first  # second run reads the cache
    assert os.stat(cache / index[0]).st_mtime_ns == mtime
    import dataclasses

    fewer = _n(train.Data(dataclasses.replace(cfg, data_percent=50)).chunks("train"))
    assert fewer < first
    assert len([f for f in os.listdir(cache) if f.endswith(".index")]) == 2  # another selection, another cache


def test_knn_vote_and_balanced_accuracy():
    ref = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.2, 0.8]], np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ref_y = np.array([0, 0, 1, 1, 1])
    q = np.array([[1, 0.05], [0.05, 1]], np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    assert list(train.knn_predict(ref, ref_y, q, k=1)) == [0, 1]
    # k=5 with 3 votes for class 1: similarity weighting still lets the two close class-0 neighbours win
    assert train.knn_predict(ref, ref_y, q, k=5)[0] == 0
    y = np.array([2, 2, 2, 2, 0])
    pred = np.array([2, 2, 2, 2, 1])
    assert train.balanced_accuracy(pred, y) == pytest.approx(0.5)   # plain accuracy would say 0.8


@pytest.mark.parametrize("percent", [100, 50])
def test_example_counts_from_bookkeeping_match_the_records(work, tmp_path, percent):
    d = train.Data(train.TrainConfig(data_path=work, ckpt_dir=str(tmp_path), data_percent=percent))
    for split in ("train", "val", "test"):
        assert d.count(split, "chunks") == _n(d.chunks(split)), split
        assert d.count(split, "triples") == _n(d.triples(split)), split


def test_worker_tensorflow_import_skips_keras_and_sklearn_and_leaves_them_importable():
    code = textwrap.dedent("""
        import sys
        from birdclef import features
        tf = features.import_tensorflow()
        for m in ("keras", "sklearn"):
            assert m not in sys.modules, m + " was imported with TF"
        import numpy as np, sklearn.metrics
        assert sklearn.metrics.accuracy_score([1, 0], [1, 1]) == 0.5
        assert tf.keras.layers.Dense(2)(np.ones((1, 3), np.float32)).shape == (1, 2)
        print(features.logmel(np.zeros((1, features.chunk_samples()), np.float32)).shape)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == str((1, *features.mel_shape()))


def test_best_epoch_counts_the_class_head_that_the_exported_model_scores_with():
    # a real demo run: k-NN reached 0.9412 at epoch 4, when the class head was still at 0.451
    history = [{"epoch": 4, "loss": 0.9, "val_knn_top1": 0.9412, "val_classifier_top1": 0.451},
               {"epoch": 10, "loss": 0.16, "val_knn_top1": 0.9412, "val_classifier_top1": 0.9412}]
    best = max(history, key=lambda e: train.selection_metric(e, "batch_hard+classify"))
    assert best["epoch"] == 10
    assert train.selection_metric(history[0], "batch_hard") == 0.9412  # no class head trained: k-NN alone
    assert train.selection_metric({"epoch": 1, "loss": 0.5}, "classify") == -0.5  # no validation data


def test_mixed_precision_trains_exports_float32_and_leaves_the_global_policy_alone(work, tmp_path):
    """--mixed-precision (float16 compute, meant for GPUs) runs on CPU too; the exported model serves
    float32 scores that sum to 1, and later models in the same process are float32 again."""
    import tensorflow as tf
    import tf_keras as keras

    ckpt = str(tmp_path / "mp")
    cfg = train.TrainConfig(data_path=work, ckpt_dir=ckpt, batch_size=8, epochs=1, steps_per_epoch=2,
                            model="dilated_cnn", loss="batch_hard+classify", jit_compile=False, mixed_precision=True)
    metrics = train.run(cfg, log=lambda s: None)
    assert metrics["history"] and all(np.isfinite(h["loss"]) for h in metrics["history"]), metrics["history"]
    assert keras.mixed_precision.global_policy().name == "float32"
    m = tf.saved_model.load(f"{ckpt}/export")
    out = m.signatures["serving_default"](waveform=tf.constant(np.random.default_rng(0).normal(0, 0.1, 96000),
                                                                tf.float32))
    assert out["scores"].dtype == tf.float32 and out["embedding"].dtype == tf.float32
    assert ((out["scores"].numpy() >= 0) & (out["scores"].numpy() <= 1)).all() and out["bird"].dtype == tf.float32
    assert models.build("dilated_cnn", features.mel_shape(), 16, 3).dtype_policy.name == "float32"


def test_embedding_traces_the_model_once_for_every_call_and_batch_size():
    import tensorflow as tf

    model = models.build("dilated_cnn", features.mel_shape(), 16, 3)
    mels = np.random.default_rng(0).normal(size=(10, *features.mel_shape())).astype(np.float32)
    for n in (10, 7, 3):  # each with a last, smaller batch
        ds = tf.data.Dataset.from_tensor_slices((mels[:n], np.arange(n) % 3))
        e, logits, y = train.embed(model, ds, batch_size=4)
        assert e.shape == (n, 16) and logits.shape == (n, 3) and list(y) == list(np.arange(n) % 3)
    assert train._inference_fn(model).experimental_get_tracing_count() == 1
    np.testing.assert_allclose(e, model(mels[:3], training=False)["embedding"].numpy(), atol=1e-5)
    import gc
    import weakref

    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None, "the cached inference function kept its model alive"


def test_class_balanced_sampling_reads_the_data_once_and_evens_the_classes():
    import tensorflow as tf

    # 150 chunks in recording order: class 0 x100, class 1 x10, class 3 x40, and 5 of an unknown label (-1)
    y = np.array([0] * 100 + [1] * 10 + [-1] * 5 + [3] * 40, np.int64)
    counts = np.array([100, 10, 0, 40])
    src = tf.data.Dataset.from_tensor_slices((np.arange(len(y)), y)).repeat()
    out = list(train.balanced(src, counts, seed=0).take(3000).as_numpy_iterator())
    xs, ys = np.array([x for x, _ in out]), np.array([c for _, c in out])
    freq = np.bincount(ys, minlength=4) / len(ys)
    assert freq[2] == 0 and (ys >= 0).all()        # no chunks, no examples; unknown labels dropped
    np.testing.assert_allclose(freq[[0, 1, 3]], 1 / 3, atol=0.03)
    # one pass over the data in its order (a copy per class would interleave several passes):
    # positions only go forward until the data starts again
    assert (np.diff(xs) < 0).sum() <= 3000 * 5 / 150 + 5  # wraps: one per pass (~5 chunks read per example)
    assert train.balanced(src, np.zeros(4), seed=0) is src  # nothing to balance


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_sampling_plan_bounds_reads_and_its_weights_restore_the_target_shares(alpha):
    # a 400-species long tail (Zipf, rarest 1 chunk) and a non-bird class last
    counts = np.r_[np.maximum(1, (2000 / np.arange(1, 401) ** 1.1).astype(int)), 3000]
    exact = train.sampling_plan(counts, nocall=400, nocall_share=0.25, alpha=alpha, max_reads=float("inf"))
    plan = train.sampling_plan(counts, nocall=400, nocall_share=0.25, alpha=alpha, max_reads=3.0)
    assert plan["reads"] <= 3.0 + 1e-6 and plan["reads"] <= exact["reads"] + 1e-6
    # drawn share x weight is the target mixture; the weights average 1 over drawn examples
    np.testing.assert_allclose(plan["sampled"] * plan["weight"], plan["target"], rtol=1e-4, atol=1e-9)
    assert (plan["sampled"] * plan["weight"]).sum() == pytest.approx(1.0)
    assert plan["target"][400] == pytest.approx(0.25) or alpha == 1.0
    birds = plan["target"][:400]
    np.testing.assert_allclose(birds / birds[0], (counts[:400] / counts[0]) ** alpha, rtol=1e-6)
    if alpha == 0.0:
        assert exact["reads"] > 10  # what plain rejection sampling would cost on this tail
        assert plan["weight"].max() > 1.5  # rare classes come less often, and weigh more


def test_sampled_classes_follow_the_plan():
    import tensorflow as tf

    y = np.array([0] * 200 + [1] * 10 + [2] * 40, np.int64)
    counts = np.bincount(y)
    plan = train.sampling_plan(counts, max_reads=1.5)
    src = tf.data.Dataset.from_tensor_slices((np.arange(len(y)), y)).repeat()
    ys = np.array([c for _, c in train.balanced(src, counts, seed=1, max_reads=1.5).take(4000).as_numpy_iterator()])
    np.testing.assert_allclose(np.bincount(ys) / len(ys), plan["sampled"], atol=0.03)


def test_class_losses_weigh_examples_by_their_class():
    import tensorflow as tf

    out = {"logits": tf.constant([[3.0, -3.0, -3.0], [3.0, -3.0, -3.0]]), "bird": tf.constant([2.0, 2.0])}
    y = tf.constant([0, 1])  # the first is right, the second wrong
    multi = tf.one_hot(y, 3)
    plain = float(train.class_losses(out, y, multi, nocall=2))
    heavy_wrong = float(train.class_losses(out, y, multi, nocall=2, weight=tf.constant([1.0, 3.0])))
    assert heavy_wrong > plain
    assert float(train.class_losses(out, y, multi, nocall=2, weight=tf.constant([1.0, 1.0]))) == pytest.approx(plain)


def test_label_smoothing_moves_the_class_optimum_off_certainty_and_leaves_presence_alone():
    import tensorflow as tf

    eps = 0.2
    at = float(np.log((1 - eps / 2) / (eps / 2)))  # the logit whose sigmoid is 1 - eps/2
    y = tf.constant([0])
    multi = tf.one_hot(y, 3)

    def grads(class_logit, bird_logit, smoothing):
        out = {"logits": tf.Variable([[class_logit, -class_logit, -class_logit]]), "bird": tf.Variable([bird_logit])}
        with tf.GradientTape() as tape:
            loss = train.class_losses(out, y, multi, nocall=2, smoothing=smoothing)
        return [g.numpy() for g in tape.gradient(loss, [out["logits"], out["bird"]])]

    g_class, _ = grads(at, 0.0, eps)
    np.testing.assert_allclose(g_class, 0.0, atol=1e-6)  # smoothed: the optimum sits at 1 - eps/2, not at 1
    g_plain, _ = grads(at, 0.0, 0.0)
    assert g_plain[0, 0] < -0.05  # without it the loss still pushes the true class up
    _, g_bird = grads(at, at, eps)
    _, g_bird_plain = grads(at, at, 0.0)
    np.testing.assert_allclose(g_bird, g_bird_plain)  # bird presence keeps its 0/1 target


@pytest.mark.parametrize("flags, says", [({"balance_alpha": 1.5}, "--balance-alpha"),
                                          ({"max_reads": 0.5}, "--max-reads")])
def test_out_of_range_sampling_flags_are_refused(tmp_path, flags, says):
    cfg = train.TrainConfig(data_path=str(tmp_path / "nowork"), ckpt_dir=str(tmp_path / "ck"), **flags)
    with pytest.raises(train.TrainError, match=says):
        train.run(cfg, log=lambda s: None)
    assert not (tmp_path / "ck").exists()


def test_a_non_finite_loss_stops_training_before_anything_is_exported(work, tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(train, "make_train_step", lambda *a, **k: (lambda x, y: tf.constant(float("nan"))))
    cfg = train.TrainConfig(data_path=work, ckpt_dir=str(tmp_path / "ck"), batch_size=8, epochs=2,
                            steps_per_epoch=2, jit_compile=False)
    with pytest.raises(train.TrainError, match=r"became nan at epoch 1, step 1.*validate --decode"):
        train.run(cfg, log=lambda s: None)
    assert not (tmp_path / "ck" / "export").exists() and not (tmp_path / "ck" / "metrics.json").exists()


@pytest.mark.parametrize("flags, says", [({"epochs": 0}, "--epochs"), ({"epochs": -1}, "--epochs"),
                                          ({"batch_size": 0}, "--batch-size"), ({"lr": 0.0}, "--lr"),
                                          ({"data_percent": 0.0}, "--data-percent")])
def test_out_of_range_training_values_are_refused_before_anything_is_written(tmp_path, flags, says):
    cfg = train.TrainConfig(data_path=str(tmp_path / "nowork"), ckpt_dir=str(tmp_path / "ck"), **flags)
    with pytest.raises(train.TrainError, match=says):
        train.run(cfg, log=lambda s: None)
    assert not (tmp_path / "ck").exists()


def test_weight_average_follows_its_definition_and_gives_the_raw_weights_back():
    import tensorflow as tf
    import tf_keras as keras

    from birdclef.averaging import WeightAverage

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    avg = WeightAverage(model, decay=0.9)
    w0 = [v.numpy().copy() for v in model.trainable_variables]
    expect = [w.copy() for w in w0]
    for step in range(30):
        new = [np.full_like(w, step + 1.0) for w in w0]
        for v, n in zip(model.trainable_variables, new):
            v.assign(n)
        avg.update(tf.constant(step + 1, tf.int64))
        d = min(0.9, (2.0 + step) / (11.0 + step))
        expect = [d * e + (1 - d) * n for e, n in zip(expect, new)]
    raw = [v.numpy().copy() for v in model.trainable_variables]
    with avg.applied():
        for v, e in zip(model.trainable_variables, expect):
            np.testing.assert_allclose(v.numpy(), e, rtol=1e-5)
    for v, r in zip(model.trainable_variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)  # the raw weights train on after validation
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_ema_training_exports_the_averaged_weights_and_resumes_them(work, tmp_path):
    import dataclasses

    ckpt = str(tmp_path / "ema")
    cfg = train.TrainConfig(data_path=work, ckpt_dir=ckpt, batch_size=8, epochs=1, steps_per_epoch=3,
                            model="dilated_cnn", jit_compile=False, ema=0.5)
    train.run(cfg, log=lambda s: None)
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(f"{ckpt}/ckpt")
    shadow = tf.train.load_variable(latest, "ema/shadow/0/.ATTRIBUTES/VARIABLE_VALUE")
    raw = tf.train.load_variable(latest, "model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    assert not np.allclose(shadow, raw)  # the average is not the last step's weights
    # the weights kept as best (and exported) are the averaged ones
    m = models.build("dilated_cnn", features.mel_shape(), cfg.embedding_dim,
                     len(json.load(open(f"{ckpt}/classes.json"))))
    m.load_weights(f"{ckpt}/best/weights")
    np.testing.assert_allclose(m.trainable_variables[0].numpy(), shadow, rtol=1e-6)
    logs = []
    train.run(dataclasses.replace(cfg, epochs=2), log=logs.append)  # resumes with its average
    assert any("resuming" in line for line in logs)
    from birdclef.stages import StageConflict

    with pytest.raises(StageConflict, match="ema"):
        train.run(dataclasses.replace(cfg, ema=0.9, epochs=3), log=lambda s: None)


def test_weight_decay_shrinks_kernels_only_and_is_part_of_the_runs_identity():
    import dataclasses

    import tensorflow as tf
    import tf_keras as keras

    cfg = train.TrainConfig(data_path="w", ckpt_dir="c", lr=0.1, lr_schedule="constant", warmup_epochs=0)
    assert "weight_decay" not in cfg.identity()  # runs recorded before the flag resume unchanged
    decayed = dataclasses.replace(cfg, weight_decay=0.5)
    assert decayed.identity()["weight_decay"] == 0.5
    assert isinstance(train.make_optimizer(cfg, 10), keras.optimizers.Adam)
    opt = train.make_optimizer(decayed, 10)
    kernel = tf.Variable(tf.ones((2, 2)), name="dense/kernel")
    bias = tf.Variable(tf.ones((2,)), name="dense/bias")
    opt.apply_gradients([(tf.zeros_like(kernel), kernel), (tf.zeros_like(bias), bias)])
    # with zero gradients only the decay moves a weight: lr * wd = 0.05 of the kernel, none of the bias
    np.testing.assert_allclose(kernel.numpy(), 0.95, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), 1.0)


def test_dropout_changes_training_only_and_keeps_checkpoints_interchangeable(tmp_path):
    shape = features.mel_shape()
    plain = models.build("dilated_cnn", shape, 16, 3)
    dropped = models.build("dilated_cnn", shape, 16, 3, dropout=0.5)
    plain.save_weights(str(tmp_path / "w"))
    dropped.load_weights(str(tmp_path / "w"))  # the same weights: dropout adds none
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    np.testing.assert_allclose(plain(x, training=False)["logits"], dropped(x, training=False)["logits"], atol=1e-5)
    assert not np.allclose(plain(x, training=True)["logits"], dropped(x, training=True)["logits"], atol=1e-5)


def test_above_floor_input_keeps_the_log_mel_and_removes_each_bands_steady_background():
    from birdclef.models.floor_dilated import FLOOR_Q, AboveFloor

    x = np.zeros((1, 200, 4), np.float32)
    x[0, :, 0] = 3.0  # a steady background band (hum, wind)
    x[0, 50:70, 1] = 5.0  # a short call over silence
    x[0, :, 2] = np.linspace(-1, 1, 200)  # a slow drift
    out = AboveFloor()(x).numpy()[0]
    np.testing.assert_array_equal(out[:, :4], x[0])  # the log-mel itself, unchanged
    assert np.abs(out[:, 4]).max() == 0.0  # the steady band: nothing above its floor
    assert out[60, 5] == 5.0 and out[0, 5] == 0.0  # the call stands out by its own level
    assert out[int(200 * FLOOR_Q), 6] == pytest.approx(0.0, abs=1e-6)  # the floor is that percentile
