"""`birdclef train`: triplet / online-mined / classification training on the transform output.

Losses (`--loss`):
  triplet              explicit (anchor, positive, negative) chunk triples from the transform
                       (the original design), triplet margin loss on L2-normalised embeddings
  batch_hard           online mining on class-balanced batches of labelled chunks: for each
                       anchor the farthest positive and the nearest negative in the batch
  classify             class head only: one sigmoid per class (species + nocall, multi-label with
                       secondary labels) and a bird-presence sigmoid (any bird vs none)
  triplet+classify     explicit triples, plus the class head on anchors and negatives
  batch_hard+classify  online mining plus the class head, on the same balanced batches

Checkpoints every epoch in CKPT_DIR/ckpt (weights, optimiser state, epoch): running the
same command again resumes after the last finished epoch. The best epoch by validation
k-NN top-1 accuracy (averaged with classifier top-1 and bird-presence AUC for losses with a class
head: `selection_metric`) is kept in CKPT_DIR/best; `--early-stopping N` stops after N epochs
without improvement. TensorBoard logs in CKPT_DIR/logs. At the end the best weights are
evaluated on the test split (CKPT_DIR/metrics.json) and exported as a SavedModel that
takes raw 32 kHz audio (CKPT_DIR/export, see birdclef.export).

Chunk losses train on class-balanced batches (`balanced`, a quarter non-bird by default) augmented
by `birdclef.augment` (--augment); the learning rate warms up, then decays (`learning_rate`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import time
import weakref

import numpy as np
import pandas as pd

from birdclef import augment as augment_mod
from birdclef import fileio, stages
from birdclef.averaging import WeightAverage
from birdclef.config import DEFAULT_FEATURES, NOCALL, FeatureConfig

MAX_READS = 3.0  # default bound on chunks read per training example drawn (see sampling_plan)
NOCALL_SHARE = 0.25  # non-bird chunks per balanced batch: negatives for bird presence and backgrounds to mix in
LOSSES = ("triplet", "batch_hard", "classify", "triplet+classify", "batch_hard+classify")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data_path: str
    ckpt_dir: str
    batch_size: int = 64
    epochs: int = 20
    cache_dir: str | None = None
    data_percent: float = 100.0
    model: str = "floor_dilated"     # bench/quality.py, 6 seeds: the best bird top-1 and presence (docs/results.md)
    loss: str = "batch_hard+classify"
    embedding_dim: int = 128
    lr: float = 1e-3
    seed: int = 0
    margin: float = 0.3
    early_stopping: int = 0
    jit_compile: bool = True
    mixed_precision: bool = False
    steps_per_epoch: int = 0          # 0: one pass over the training data
    knn_k: int = 5
    augment: str = augment_mod.DEFAULT  # `birdclef.augment` names, comma separated, or none
    lr_schedule: str = "cosine"       # cosine: linear warm-up over warmup_epochs, then cosine decay; constant
    warmup_epochs: float = 1.0
    nocall_share: float = NOCALL_SHARE  # share of non-bird chunks in class-balanced batches
    balance_alpha: float = 0.0        # class shares ∝ chunks ** alpha: 0 balanced, 1 as the data comes
    max_reads: float = MAX_READS      # chunks read per example at most; loss weights even out the rest
    ema: float = 0.995                # decay of the weights' moving average (birdclef.averaging); 0: off
    dropout: float = 0.0              # dropout rate on the pooled features, before the heads; 0: off
    weight_decay: float = 0.0         # decoupled weight decay (AdamW) of kernels; 0: plain Adam
    teacher: str = ""                 # a model folder (run or ensemble) whose probabilities the class head also learns
    distill: float = 0.5              # share of the teacher's probabilities in the class and presence targets
    label_smoothing: float = 0.0      # class targets 0/1 become eps/2 and 1 - eps/2 (presence keeps 0/1); 0: off
    call_weight: float = 1.0          # loss weight of bird chunks showing no call (birdclef.weak_labels); 1: off

    def identity(self) -> dict:
        """What makes a run: changing these on an existing ckpt_dir is refused."""
        ident = {k: getattr(self, k) for k in ("data_path", "data_percent", "model", "loss", "embedding_dim", "seed",
                                               "augment", "lr_schedule", "nocall_share",
                                               "balance_alpha", "max_reads")}
        # settings added later are recorded only when on: a run recorded before them (without weight
        # averaging, dropout or weight decay) resumes with them off, and is refused with them on
        ident.update({k: getattr(self, k) for k in ("ema", "dropout", "weight_decay", "label_smoothing")
                      if getattr(self, k)})
        if self.teacher:
            ident.update(teacher=self.teacher, distill=self.distill)
        if self.call_weight != 1.0:
            ident.update(call_weight=self.call_weight)
        return ident


class TrainError(Exception):
    pass


# ---------------------------------------------------------------- data
def read_recordings(data_path: str) -> pd.DataFrame:
    p = fileio.join(data_path, "preprocess", "recordings.csv")
    if not fileio.exists(p) or not fileio.exists(stages.marker(fileio.join(data_path, "transform", "tft"))):
        raise TrainError(f"{data_path} holds no finished transform; fix: run `birdclef preprocess` and "
                         f"`birdclef transform --work-dir {data_path}` first")
    return pd.read_csv(io.StringIO(fileio.read_text(p)), dtype=str, keep_default_na=False)


def class_names(rec: pd.DataFrame) -> list[str]:
    """Bird labels in sorted order, then `nocall` last."""
    return sorted(set(rec["label"]) - {NOCALL}) + [NOCALL]


def select_recordings(rec: pd.DataFrame, percent: float, seed: int) -> set[str]:
    """A species-stratified fraction of recordings (at least one per label and split)."""
    if percent >= 100:
        return set(rec["recording_id"])
    rng = np.random.default_rng([seed, 13])
    keep = set()
    for _, grp in rec.groupby(["label", "split"]):
        ids = sorted(grp["recording_id"])
        n = max(1, int(math.ceil(len(ids) * percent / 100.0)))
        keep.update(ids[i] for i in rng.permutation(len(ids))[:n])
    return keep


def _table(keys: list[str], values: list[int], default: int):
    import tensorflow as tf

    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(values, tf.int64)), default)


class Data:
    """tf.data pipelines over WORK_DIR/transform/tft for one training configuration."""

    def __init__(self, cfg: TrainConfig, feature_cfg: FeatureConfig = DEFAULT_FEATURES):
        import tensorflow as tf

        self.cfg, self.fcfg = cfg, feature_cfg
        self.rec = read_recordings(cfg.data_path)
        self.classes = class_names(self.rec)
        self.allowed = select_recordings(self.rec, cfg.data_percent, cfg.seed)
        self.tft_dir = fileio.join(cfg.data_path, "transform", "tft")
        self.label_ids = _table(self.classes, list(range(len(self.classes))), -1)
        # soundscape nocall chunks have no row in recordings.csv: always allowed
        self.allowed_table = _table(sorted(self.allowed), [1] * len(self.allowed), 0)
        self.tf = tf
        self.plan: dict | None = None  # the class sampling of the last train_dataset (sampling_plan)

    def _files(self, split: str, kind: str) -> list[str]:
        return sorted(self.tf.io.gfile.glob(fileio.join(self.tft_dir, split, f"{kind}-*.tfrecord")))

    def _fingerprint(self, split: str, kind: str) -> str:
        h = hashlib.sha256()
        for f in self._files(split, kind):
            h.update(f"{f}:{self.tf.io.gfile.stat(f).length}:{self.tf.io.gfile.stat(f).mtime_nsec}".encode())
        h.update(json.dumps([CACHE_VERSION, self.cfg.data_percent, self.cfg.seed, sorted(self.allowed)]).encode())
        return h.hexdigest()[:16]

    def _cached(self, ds, split: str, kind: str):
        """With --cache-dir, cache parsed examples there under a name that changes with the input
        files and the selection, so a valid cache is reused across runs. Without it, read the
        TFRecords every epoch (an in-memory cache would not fit real data sets)."""
        if not self.cfg.cache_dir:
            return ds
        fileio.makedirs(self.cfg.cache_dir)
        base = fileio.join(self.cfg.cache_dir, f"{split}-{kind}-{self._fingerprint(split, kind)}")
        if not self.tf.io.gfile.exists(base + ".index"):  # an interrupted first epoch leaves a lock
            for stale in self.tf.io.gfile.glob(base + "*"):
                self.tf.io.gfile.remove(stale)
        return ds.cache(base)

    def _records(self, split: str, kind: str, spec: dict, id_key: str):
        from birdclef.pipeline.records import parse_batch

        tf = self.tf
        files = self._files(split, kind)
        if not files:
            raise TrainError(f"no {kind} TFRecords for split {split} in {self.tft_dir}")
        ds = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE).batch(256)
        ds = ds.map(lambda x: parse_batch(x, spec, self.fcfg), num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        return ds.filter(lambda e: tf.logical_or(
            self.allowed_table.lookup(e[id_key]) > 0, tf.strings.regex_full_match(e[id_key], "soundscape/.*")))

    def chunks(self, split: str):
        """(mel, class id, multi-hot targets [classes]) per chunk, cached. The targets hold the primary
        label and every secondary label that is a class (labels of no class are left out)."""
        from birdclef.pipeline.records import chunk_feature_spec

        tf = self.tf
        n_classes = len(self.classes)

        def targets(e):
            y = self.label_ids.lookup(e["label"])
            ids = self.label_ids.lookup(tf.strings.split(e["labels"]))
            ids = tf.concat([tf.boolean_mask(ids, ids >= 0), tf.boolean_mask(y[None], y[None] >= 0)], 0)
            multi = tf.minimum(tf.reduce_sum(tf.one_hot(ids, n_classes), 0), 1.0)
            return e["mel"], y, multi

        ds = self._records(split, "chunks", chunk_feature_spec(self.fcfg), "recording_id")
        ds = ds.map(targets, num_parallel_calls=tf.data.AUTOTUNE)
        return self._cached(ds, split, "chunks")

    def triples(self, split: str):
        """((anchor, positive, negative), (anchor class, negative class)), cached."""
        from birdclef.pipeline.records import triple_feature_spec

        tf = self.tf
        ds = self._records(split, "triples", triple_feature_spec(self.fcfg), "anchor_id")
        ds = ds.map(lambda e: ((e["anchor_mel"], e["positive_mel"], e["negative_mel"]),
                               (self.label_ids.lookup(e["anchor_label"]), self.label_ids.lookup(e["negative_label"]))),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return self._cached(ds, split, "triples")

    def count(self, split: str, kind: str) -> int:
        """Examples of a split after the selection, from the transform's bookkeeping (no mel is read).

        Chunks count the selected recordings' chunks plus the nocall chunks of the split's soundscapes."""
        pairs_dir = fileio.join(self.cfg.data_path, "transform", "pairs")
        if kind == "triples":
            return sum(t["split"] == split and t["anchor"][0] in self.allowed
                       for t in fileio.read_jsonl(fileio.join(pairs_dir, "triples.jsonl")))
        return int(self.class_counts(split).sum())

    def class_counts(self, split: str) -> np.ndarray:
        """Chunks per class (in `classes` order) of a split after the selection, from the transform's
        bookkeeping (no mel is read): the selected recordings' chunks under their label, plus the
        nocall chunks of the split's soundscapes."""
        chunks_dir = fileio.join(self.cfg.data_path, "transform", "chunks")
        index = {c: i for i, c in enumerate(self.classes)}
        n = np.zeros(len(self.classes), np.int64)
        for c in fileio.read_jsonl(fileio.join(chunks_dir, "counts*.jsonl")):
            if c["split"] == split and c["recording_id"] in self.allowed and c["label"] in index:
                n[index[c["label"]]] += c["n_chunks"]
        n[index[NOCALL]] += self._soundscape_nocall_chunks(split)
        return n

    def _soundscape_nocall_chunks(self, split: str) -> int:
        sc_csv = fileio.join(self.cfg.data_path, "preprocess", "soundscapes.csv")
        labels_csv = fileio.join(json.loads(fileio.read_text(stages.marker(
            fileio.join(self.cfg.data_path, "preprocess"))))["params"]["data_dir"], "train_soundscape_labels.csv")
        sc = pd.read_csv(io.StringIO(fileio.read_text(sc_csv)), dtype=str, keep_default_na=False)
        sc = sc[sc["split"] == split]
        if sc.empty or not fileio.exists(labels_csv):
            return 0
        lab = pd.read_csv(io.StringIO(fileio.read_text(labels_csv)), dtype=str, keep_default_na=False)
        keys = set(sc["audio_id"] + "_" + sc["site"])
        windows = lab[(lab["audio_id"] + "_" + lab["site"]).isin(keys) & (lab["birds"] == NOCALL)]
        from birdclef.features import chunk_starts

        per_window = len(chunk_starts(int(self.fcfg.window_s * self.fcfg.sample_rate), self.fcfg))
        return len(windows) * per_window

    def train_dataset(self):
        """The training input pipeline for the configured loss; returns (dataset, steps per epoch)."""
        tf = self.tf
        b = self.cfg.batch_size
        if self.cfg.loss.startswith("triplet"):
            ds = self.triples("train")
            n = self.count("train", "triples")
            ds = ds.shuffle(min(n, 4096), seed=self.cfg.seed, reshuffle_each_iteration=True).repeat()
        else:
            counts = self.class_counts("train")
            n = int(counts.sum())
            nocall = self.classes.index(NOCALL)
            self.plan = sampling_plan(counts, nocall, self.cfg.nocall_share, self.cfg.balance_alpha,
                                      self.cfg.max_reads)
            ds = balanced(self.chunks("train").repeat(), counts, self.cfg.seed, nocall=nocall,
                          nocall_share=self.cfg.nocall_share, alpha=self.cfg.balance_alpha,
                          max_reads=self.cfg.max_reads)
            ds = ds.shuffle(BALANCED_SHUFFLE, seed=self.cfg.seed)
        if n == 0:
            raise TrainError("the training split is empty after --data-percent selection")
        steps = self.cfg.steps_per_epoch or max(1, n // b)
        ds = ds.batch(b, drop_remainder=True)
        if not self.cfg.loss.startswith("triplet"):  # explicit triples are not augmented
            from birdclef.pipeline.stage2_tft import fitted_normalisation

            mean, std = fitted_normalisation(self.tft_dir, self.fcfg)
            names = augment_mod.parse(self.cfg.augment)
            nocall = self.classes.index(NOCALL)
            # short clips at a random place in their chunk (always), then the chosen augmentations
            ds = ds.map(lambda x, y, m: (augment_mod.place_short(x, mean, std), y, m),
                        num_parallel_calls=tf.data.AUTOTUNE)
            bank = augment_mod.quiet_bank(self.fcfg, self.cfg.seed) if "quiet" in names else None
            if self.cfg.call_weight != 1.0:  # weights from the chunk as recorded, before anything is mixed in
                from birdclef import weak_labels

                floor = self.cfg.call_weight
                ds = ds.map(lambda x, y, m: (x, y, m, weak_labels.call_weight(x, y, nocall, mean, std, floor)),
                            num_parallel_calls=tf.data.AUTOTUNE)
            else:
                ds = ds.map(lambda x, y, m: (x, y, m, tf.ones_like(y, tf.float32)))
            if names:
                ds = ds.map(lambda x, y, m, w: (*augment_mod.augment_batch(x, y, m, names, mean, std, nocall, bank), w),
                            num_parallel_calls=tf.data.AUTOTUNE)
            ds = ds.map(lambda x, y, m, w: (x, (y, m, w)))
        return ds.prefetch(tf.data.AUTOTUNE), steps


BALANCED_SHUFFLE = 2048  # chunks (about 100 KB each as float32) mixed after class balancing
CACHE_VERSION = 2  # bumped when what Data.chunks yields changes, so --cache-dir caches of older runs are not read


def target_shares(counts: np.ndarray, nocall: int | None = None, nocall_share: float = 0.0,
                  alpha: float = 0.0) -> np.ndarray:
    """The share of training examples each class should get: bird classes in proportion to
    counts ** alpha (0: every class with chunks equally often; 1: as often as they come), and, where
    `nocall` (an index) has chunks and nocall_share > 0, non-bird chunks as nocall_share of all
    examples (at least their alpha share)."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    target = np.where(present, np.maximum(counts, 1) ** alpha, 0.0)
    if nocall is not None and present[nocall] and nocall_share > 0:
        birds = target.sum() - target[nocall]
        if birds > 0:
            target[nocall] = max(target[nocall], nocall_share / (1.0 - nocall_share) * birds)
    return target / target.sum() if target.sum() > 0 else target


def sampling_plan(counts: np.ndarray, nocall: int | None = None, nocall_share: float = 0.0,
                  alpha: float = 0.0, max_reads: float = MAX_READS) -> dict:
    """How `balanced` draws training examples from chunks that come in class proportions `counts`.

    A chunk of class c is kept with probability keep[c] (rejection sampling, one pass over the data in
    its own order), which alone would reach the target shares (`target_shares`) by reading the data
    1 / sum(counts/N * keep) times per example: 6.4 times on birdclef-plus, hundreds of times on
    BirdCLEF's long tail. So the keep probabilities are raised (never above 1) until at most
    `max_reads` chunks are read per example, and what that leaves uneven is evened by a loss weight
    per class, weight[c] = target[c] / sampled share[c] (mean 1 over the examples drawn): the expected
    gradient is that of the target mixture at a bounded read cost. Rarest classes then come less often
    than their target but count more when they do.

    Returns keep [C], weight [C], reads (chunks read per example), target [C], sampled [C] shares."""
    counts = np.asarray(counts, np.float64)
    if max_reads < 1:
        raise ValueError(f"max_reads {max_reads}: at least one chunk is read per example")
    target = target_shares(counts, nocall, nocall_share, alpha)
    present = counts > 0
    n = counts.sum()
    base = np.where(present, target / np.maximum(counts, 1), 0.0)
    if n == 0 or base.max() == 0:
        z = np.zeros_like(counts, dtype=np.float32)
        return {"keep": z, "weight": np.ones_like(z), "reads": 1.0, "target": target, "sampled": target}
    base = base / base.max()

    def reads(scale: float) -> float:
        return float(n / (counts * np.minimum(1.0, base * scale)).sum())

    lo, hi = 1.0, 1.0 / base[present].min()  # at hi every chunk is kept: one read per example
    if reads(lo) > max_reads:
        for _ in range(60):
            mid = (lo * hi) ** 0.5
            lo, hi = (mid, hi) if reads(mid) > max_reads else (lo, mid)
        scale = hi
    else:
        scale = lo
    keep = np.minimum(1.0, base * scale)
    sampled = counts * keep / (counts * keep).sum()
    weight = np.where(sampled > 0, target / np.maximum(sampled, 1e-12), 1.0)
    weight = weight / (sampled * weight).sum()  # mean weight 1 over drawn examples
    return {"keep": keep.astype(np.float32), "weight": weight.astype(np.float32), "reads": reads(scale),
            "target": target, "sampled": sampled}


def balanced_keep(counts: np.ndarray, nocall: int | None = None, nocall_share: float = 0.0) -> np.ndarray:
    """Per class, the keep probability that reaches the target shares exactly (no read bound)."""
    return sampling_plan(counts, nocall, nocall_share, 0.0, float("inf"))["keep"]


def balanced(ds, counts: np.ndarray, seed: int, nocall: int | None = None, nocall_share: float = 0.0,
             alpha: float = 0.0, max_reads: float = float("inf")):
    """(mel, class, ...) examples -> classes in the shares of `sampling_plan` (by default every class
    with chunks equally often, non-bird chunks as `nocall_share` of them), in one pass over the data.

    Rejection sampling: a chunk of class c is kept with probability keep[c], so each read chunk is
    decoded once and the data is read `sampling_plan(...)["reads"]` times per example (at most
    max_reads; the loss weights of the plan make up for the rest). Sampling from one filtered copy of
    the data per class read all of it once per class (7x on the demo, ~400x on BirdCLEF's species)
    and held a shuffle buffer per class (512 chunks, ~50 MB each)."""
    import tensorflow as tf

    present = counts > 0
    if not present.any():
        return ds
    keep = sampling_plan(counts, nocall, nocall_share, alpha, max_reads)["keep"]
    keep_t = tf.constant(np.concatenate([[0.0], keep]).astype(np.float32))  # class -1 (unknown): never
    coins = tf.data.Dataset.random(seed=seed).map(lambda r: tf.cast(r % (1 << 24), tf.float32) / float(1 << 24))
    return (tf.data.Dataset.zip((ds, coins))
            .filter(lambda xy, u: u < tf.gather(keep_t, tf.cast(xy[1], tf.int32) + 1))
            .map(lambda xy, u: xy))


# ---------------------------------------------------------------- losses
def pairwise_sq_dist(e):
    import tensorflow as tf

    dot = tf.matmul(e, e, transpose_b=True)
    sq = tf.linalg.diag_part(dot)
    return tf.maximum(sq[:, None] - 2.0 * dot + sq[None, :], 0.0)


def triplet_loss(a, p, n, margin: float):
    import tensorflow as tf

    dp = tf.reduce_sum(tf.square(a - p), -1)
    dn = tf.reduce_sum(tf.square(a - n), -1)
    return tf.reduce_mean(tf.nn.relu(dp - dn + margin))


def batch_hard_loss(emb, labels, margin: float):
    """Batch-hard triplet loss (Hermans et al. 2017) over anchors that have a positive."""
    import tensorflow as tf

    d = pairwise_sq_dist(emb)
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    pos_mask = tf.logical_and(same, tf.logical_not(eye))
    hardest_pos = tf.reduce_max(tf.where(pos_mask, d, 0.0), axis=1)
    hardest_neg = tf.reduce_min(tf.where(same, 1e9, d), axis=1)
    valid = tf.cast(tf.reduce_any(pos_mask, axis=1), d.dtype)
    per = tf.nn.relu(hardest_pos - hardest_neg + margin) * valid
    return tf.reduce_sum(per) / tf.maximum(tf.reduce_sum(valid), 1.0)


def class_losses(out, y, multi, nocall: int, weight=None, bird_target=None, smoothing: float = 0.0):
    """The class head's loss: sigmoid cross-entropy per class (multi-label: secondary and mixed-in birds
    count as present) plus sigmoid cross-entropy of the bird-presence logit (1 for every chunk whose
    primary label is a bird class, 0 for non-bird audio and `nocall` windows). weight: per example
    [b] (the sampling plan's class weights), a weighted mean; None: a plain mean. bird_target: soft
    presence targets [b] (distillation) instead of the labels' 0/1. smoothing: class targets pulled
    towards 1/2 by this much (label smoothing), so no class is pushed to certainty on a few recordings."""
    import tensorflow as tf

    if smoothing:
        multi = tf.cast(multi, tf.float32) * (1.0 - smoothing) + smoothing / 2.0

    known = tf.cast(y >= 0, tf.float32)
    w = tf.ones_like(known) if weight is None else tf.cast(weight, tf.float32)
    per = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=multi, logits=out["logits"]), -1)
    xent = tf.reduce_sum(per * w) / tf.maximum(tf.reduce_sum(w), 1e-6)
    bird = tf.cast(tf.logical_and(y >= 0, y != nocall), tf.float32)
    if bird_target is not None:
        bird = tf.cast(bird_target, tf.float32)
    presence = tf.nn.sigmoid_cross_entropy_with_logits(labels=bird, logits=out["bird"])
    presence = tf.reduce_sum(presence * known * w) / tf.maximum(tf.reduce_sum(known * w), 1e-6)
    return xent + presence


def make_train_step(model, optimizer, cfg: TrainConfig, class_weights=None, average=None, teacher=None):
    """step(x, y) -> loss. y: class ids [b], or (class ids, multi-hot targets [b, C]) from
    `Data.train_dataset`; explicit triples take ((a, p, n), (anchor class, negative class)).
    class_weights [C]: the class head's loss weight per primary class (`sampling_plan`), or None.
    average: a `birdclef.averaging.WeightAverage` updated after every step, or None.
    teacher: x -> (scores, bird) of a trained model (`birdclef.distill.teacher`), mixed into the class
    head's targets by cfg.distill; None: the labels alone."""
    import tensorflow as tf

    cw = None if class_weights is None else tf.constant(np.asarray(class_weights, np.float32))

    classify = cfg.loss.endswith("classify")
    triple_input = cfg.loss.startswith("triplet")
    n_classes = int(model.output["logits"].shape[-1])
    nocall = n_classes - 1  # classes: the birds in sorted order, then nocall (class_names)

    def targets(y):
        if isinstance(y, (tuple, list)):
            return y[0], y[1], (y[2] if len(y) > 2 else None)
        return y, tf.one_hot(y, n_classes), None

    def step(x, y):
        with tf.GradientTape() as tape:
            if triple_input:
                a, p, n = x
                ya, yn = y
                b = tf.shape(a)[0]
                out = model(tf.concat([a, p, n], 0), training=True)
                e = out["embedding"]
                loss = triplet_loss(e[:b], e[b:2 * b], e[2 * b:], cfg.margin)
                if classify:
                    yy = tf.concat([ya, yn], 0)
                    picked = {k: tf.concat([out[k][:b], out[k][2 * b:]], 0) for k in ("logits", "bird")}
                    loss += class_losses(picked, yy, tf.one_hot(yy, n_classes), nocall,
                                        smoothing=cfg.label_smoothing)
            else:
                y, multi, call_w = targets(y)
                out = model(x, training=True)
                loss = tf.constant(0.0)
                if cfg.loss.startswith("batch_hard"):
                    loss += batch_hard_loss(out["embedding"], y, cfg.margin)
                if classify:
                    w = None if cw is None else tf.gather(cw, tf.maximum(y, 0))
                    if call_w is not None:  # birdclef.weak_labels: bird chunks showing no call count less
                        w = call_w if w is None else w * call_w
                    bird_target = None
                    if teacher is not None:
                        t_scores, t_bird = teacher(x)
                        d = cfg.distill
                        multi = (1.0 - d) * tf.cast(multi, tf.float32) + d * t_scores
                        hard = tf.cast(tf.logical_and(y >= 0, y != nocall), tf.float32)
                        bird_target = (1.0 - d) * hard + d * t_bird
                    loss += class_losses(out, y, multi, nocall, w, bird_target, cfg.label_smoothing)
            loss += tf.add_n(model.losses) if model.losses else 0.0
            scaled = optimizer.get_scaled_loss(loss) if cfg.mixed_precision else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        if cfg.mixed_precision:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if average is not None:
            average.update(optimizer.iterations)
        return loss

    return tf.function(step, jit_compile=cfg.jit_compile)


def learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    """The optimiser's learning rate: constant, or (`cosine`, the default) a linear warm-up from 0
    over `warmup_epochs`, then a cosine decay to 5 % of --lr at the last epoch. Issue 16 saw validation
    top-1 swing between 0.04 and 0.89 across epochs with a constant rate; one seed each on birdclef-plus
    (bench/quality.py) has not yet shown the schedule steadier (after epoch 4: 0.42-0.55 cosine,
    0.44-0.53 constant)."""
    import tf_keras as keras

    if cfg.lr_schedule == "constant":
        return cfg.lr
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(min(total // 2, round(cfg.warmup_epochs * steps_per_epoch)))
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else cfg.lr, max(1, total - warmup), alpha=0.05,
        warmup_target=cfg.lr if warmup else None, warmup_steps=warmup)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    """Adam, or with --weight-decay AdamW: decoupled decay of the kernels (biases and batch-norm
    scales and offsets are not decayed)."""
    import tf_keras as keras

    lr = learning_rate(cfg, steps_per_epoch)
    if not cfg.weight_decay:
        return keras.optimizers.Adam(lr)
    opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


# ---------------------------------------------------------------- evaluation
_INFER: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _inference_fn(model):
    """One traced inference function per model, for any batch size: a new tf.function per call
    (twice per epoch) retraced the whole model each time, and again for each last, smaller batch."""
    import tensorflow as tf

    if model not in _INFER:
        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        ref = weakref.ref(model)  # the cached function must not keep its model alive
        _INFER[model] = tf.function(lambda x: ref()(x, training=False), input_signature=[spec])
    return _INFER[model]


def embed(model, ds, batch_size: int = 128, with_bird: bool = False):
    """Embeddings, logits and class ids of a (mel, class, ...) dataset; with_bird: also the
    bird-presence logits."""
    infer = _inference_fn(model)
    embs, logits, ys, birds = [], [], [], []
    for batch in ds.batch(batch_size):
        out = infer(batch[0])
        embs.append(out["embedding"].numpy())
        logits.append(out["logits"].numpy())
        birds.append(out["bird"].numpy() if "bird" in out else np.zeros(len(logits[-1]), np.float32))
        ys.append(batch[1].numpy())
    if not embs:
        res = np.zeros((0, 1)), np.zeros((0, 1)), np.zeros(0, np.int64)
        return (*res, np.zeros(0)) if with_bird else res
    res = np.concatenate(embs), np.concatenate(logits), np.concatenate(ys)
    return (*res, np.concatenate(birds)) if with_bird else res


def knn_predict(ref_e, ref_y, q_e, k: int = 5) -> np.ndarray:
    """Class of a cosine k-NN vote, weighted by similarity (embeddings are L2-normalised)."""
    sims = q_e @ ref_e.T
    k = min(k, len(ref_e))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    n_cls = int(ref_y.max()) + 1
    votes = np.zeros((len(q_e), n_cls))
    for j in range(k):
        np.add.at(votes, (np.arange(len(q_e)), ref_y[idx[:, j]]), sims[np.arange(len(q_e)), idx[:, j]] + 1.0)
    return votes.argmax(1)


def knn_top1(ref_e, ref_y, q_e, q_y, k: int = 5) -> float:
    """Top-1 accuracy of the cosine k-NN vote."""
    if len(q_e) == 0 or len(ref_e) == 0:
        return float("nan")
    return float((knn_predict(ref_e, ref_y, q_e, k) == q_y).mean())


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean per-class recall over the classes present, so a large `nocall` class cannot hide the birds."""
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


MAX_REFERENCE_CHUNKS = 20000  # k-NN reference: at most this many train chunks


def selection_metric(entry: dict, loss: str) -> float:
    """What picks the best epoch (higher is better): validation k-NN top-1, averaged with classifier
    top-1 where the loss trains the class head, because the exported model scores windows with that
    head; k-NN alone once kept an epoch whose head was still at 0.45 (test accuracy 0.69 instead of
    ~0.94). Without validation data: minus the training loss."""
    if "val_knn_top1" not in entry:
        return -entry["loss"]
    if loss.endswith("classify") and "val_classifier_top1" in entry:
        parts = [entry["val_knn_top1"], entry["val_classifier_top1"]]
        # bird presence decides `nocall` in predict: an epoch that cannot tell birds from noise is not best
        if entry.get("val_bird_auc") is not None and entry["val_bird_auc"] == entry["val_bird_auc"]:
            parts.append(entry["val_bird_auc"])
        return float(np.mean(parts))
    return entry["val_knn_top1"]


def presence_metrics(bird_logits: np.ndarray, is_bird: np.ndarray, threshold: float = 0.5) -> dict:
    """Bird presence (bird chunks against non-bird ones) as `evaluate.presence` measures it, on the
    sigmoid of the logits: bird_auc, bird_precision, bird_recall, bird_f1."""
    from birdclef.evaluate import presence

    prob = 1.0 / (1.0 + np.exp(-np.asarray(bird_logits, np.float64)))
    p = presence(prob, np.asarray(is_bird, bool), threshold)
    return {f"bird_{k}": p[k] for k in ("auc", "precision", "recall", "f1")}


def evaluate_split(model, data: Data, split: str, k: int) -> dict:
    ref_e, _, ref_y = embed(model, data.chunks("train").take(MAX_REFERENCE_CHUNKS))
    e, logits, y, bird = embed(model, data.chunks(split), with_bird=True)
    if len(y) == 0:
        return {"split": split, "chunks": 0}
    counts = np.bincount(y, minlength=len(data.classes))
    knn = knn_predict(ref_e, ref_y, e, k) if len(ref_e) else np.full_like(y, -1)
    clf = logits.argmax(1)
    birds = y != data.classes.index(NOCALL)
    bird_clf = logits[:, :-1].argmax(1) if logits.shape[1] > 1 else clf  # the best bird class
    return {
        "split": split, "chunks": int(len(y)), "bird_chunks": int(birds.sum()),
        "knn_top1": float((knn == y).mean()),
        "knn_top1_birds": float((knn[birds] == y[birds]).mean()) if birds.any() else float("nan"),
        "knn_balanced": balanced_accuracy(knn, y),
        "classifier_top1": float((clf == y).mean()),
        "classifier_top1_birds": float((bird_clf[birds] == y[birds]).mean()) if birds.any() else float("nan"),
        "classifier_balanced": balanced_accuracy(clf, y),
        **presence_metrics(bird, birds),
        "chance_uniform": 1.0 / int((counts > 0).sum()),
        "chance_majority": float(counts.max() / counts.sum()),
        "classes_present": int((counts > 0).sum()),
    }


# ---------------------------------------------------------------- the run
def run(cfg: TrainConfig, feature_cfg: FeatureConfig = DEFAULT_FEATURES, log=print) -> dict:
    """Train (or resume) one model; returns its metrics. --mixed-precision sets Keras' global dtype
    policy for this run only: it is put back afterwards, so later models in the process are float32."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras as keras

    previous = keras.mixed_precision.global_policy()
    try:
        return _run(cfg, feature_cfg, log)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _run(cfg: TrainConfig, feature_cfg: FeatureConfig, log) -> dict:
    from birdclef import models

    try:
        augment_mod.parse(cfg.augment)
    except ValueError as e:
        raise TrainError(str(e)) from e
    if cfg.lr_schedule not in ("cosine", "constant"):
        raise TrainError(f"--lr-schedule {cfg.lr_schedule!r}: choose cosine or constant")
    if cfg.loss not in LOSSES:
        raise TrainError(f"unknown loss {cfg.loss!r}; known: {', '.join(LOSSES)}")
    for name, value, low in (("epochs", cfg.epochs, 1), ("batch_size", cfg.batch_size, 1),
                             ("embedding_dim", cfg.embedding_dim, 1), ("steps_per_epoch", cfg.steps_per_epoch, 0)):
        if value < low:
            raise TrainError(f"--{name.replace('_', '-')} {value}: give at least {low}")
    if not cfg.lr > 0 or not 0 < cfg.data_percent <= 100:
        raise TrainError(f"--lr {cfg.lr:g} / --data-percent {cfg.data_percent:g}: the learning rate must be > 0 "
                         "and the percent of recordings in (0, 100]")
    if not 0.0 <= cfg.balance_alpha <= 1.0:
        raise TrainError(f"--balance-alpha {cfg.balance_alpha:g}: choose a value from 0 (every class equally "
                         "often) to 1 (classes as often as their chunks come)")
    if not 0.0 <= cfg.dropout < 1.0:
        raise TrainError(f"--dropout {cfg.dropout:g}: choose a rate in [0, 1)")
    if not 0.0 <= cfg.weight_decay < 1.0:
        raise TrainError(f"--weight-decay {cfg.weight_decay:g}: choose a rate in [0, 1)")
    if not cfg.max_reads >= 1.0:
        raise TrainError(f"--max-reads {cfg.max_reads:g}: at least 1 (one chunk read per example, no balancing "
                         "by sampling) is needed")
    if cfg.model not in models.REGISTRY:
        raise TrainError(f"unknown model {cfg.model!r}; known: {', '.join(models.REGISTRY)} (--model list)")
    if cfg.teacher and cfg.loss not in ("classify", "batch_hard+classify"):
        raise TrainError(f"--teacher teaches the class head of a batch loss; --loss {cfg.loss} has none: choose "
                         "--loss batch_hard+classify or classify")
    if not 0.0 < cfg.distill <= 1.0:
        raise TrainError(f"--distill {cfg.distill:g}: choose a share in (0, 1]")
    data = Data(cfg, feature_cfg)  # checks the input before anything is written
    with stages.locked(cfg.ckpt_dir, "birdclef train"):
        return _train(cfg, feature_cfg, data, log)


def _train(cfg: TrainConfig, feature_cfg: FeatureConfig, data: "Data", log) -> dict:
    import tensorflow as tf
    import tf_keras as keras
    from tqdm import tqdm

    from birdclef import export, models

    stages.claim(fileio.join(cfg.ckpt_dir, "run.json"), cfg.identity(), "a training run", "use another --ckpt-dir",
                 key="identity", extra={"config": dataclasses.asdict(cfg)})

    tf.random.set_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    fileio.write_text(fileio.join(cfg.ckpt_dir, "classes.json"), json.dumps(data.classes))
    from birdclef.features import mel_shape

    model = models.build(cfg.model, mel_shape(feature_cfg), cfg.embedding_dim, len(data.classes), cfg.dropout)
    train_ds, steps = data.train_dataset()
    optimizer = make_optimizer(cfg, steps)
    if cfg.mixed_precision:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    epoch_var = tf.Variable(0, dtype=tf.int64, name="epoch")
    best_var = tf.Variable(-1.0, dtype=tf.float64, name="best_metric")
    stale_var = tf.Variable(0, dtype=tf.int64, name="epochs_without_improvement")
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    tracked = {"ema": average.module} if average else {}
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var, best=best_var, stale=stale_var,
                               **tracked)
    manager = tf.train.CheckpointManager(ckpt, fileio.join(cfg.ckpt_dir, "ckpt"), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        log(f"train: resuming from {manager.latest_checkpoint} after epoch {int(epoch_var.numpy())}")
    best_path = fileio.join(cfg.ckpt_dir, "best", "weights")
    writer = tf.summary.create_file_writer(fileio.join(cfg.ckpt_dir, "logs"))

    history_path = fileio.join(cfg.ckpt_dir, "history.json")
    # the epochs of the checkpoint restored (an epoch recorded but not checkpointed is trained again)
    history = [h for h in (fileio.read_json(history_path) or []) if h.get("epoch", 0) <= int(epoch_var.numpy())]
    teacher = None
    if cfg.teacher:
        from birdclef import distill

        try:
            teacher = distill.teacher(cfg.teacher, data.classes, data.tft_dir, feature_cfg)
        except distill.DistillError as e:
            raise TrainError(str(e)) from e
        log(f"train: distilling {cfg.teacher} (targets {1 - cfg.distill:g} labels + {cfg.distill:g} its probabilities)")
    step_fn = make_train_step(model, optimizer, cfg, data.plan["weight"] if data.plan else None, average, teacher)
    if data.plan:
        log(f"train: class sampling reads {data.plan['reads']:.2f} chunks per example (--max-reads "
            f"{cfg.max_reads:g}); loss weights {data.plan['weight'].min():.2f}-{data.plan['weight'].max():.2f}")
    it = iter(train_ds)
    has_val = bool(data._files("val", "chunks")) and data.count("val", "chunks") > 0
    start_epoch = int(epoch_var.numpy())
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        if cfg.early_stopping and int(stale_var.numpy()) >= cfg.early_stopping:
            log(f"train: early stopping, no improvement for {cfg.early_stopping} epochs")
            break
        t0 = time.perf_counter()
        losses = []
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", unit="step", disable=None, leave=False)
        for i in bar:
            x, y = next(it)
            losses.append(float(step_fn(x, y)))
            if not np.isfinite(losses[-1]):
                raise TrainError(
                    f"the training loss became {losses[-1]} at epoch {epoch}, step {i + 1}: the input holds "
                    "non-finite values or the learning rate is too high; fix: run `birdclef validate --decode` on "
                    "the data (files with NaN/Inf samples are refused as non_finite) or lower --lr, then train "
                    f"again (epochs up to {epoch - 1} are kept in {cfg.ckpt_dir}; nothing was exported)")
            bar.set_postfix(loss=f"{losses[-1]:.3f}",
                            ex_s=f"{len(losses) * cfg.batch_size / (time.perf_counter() - t0):.0f}")
        dt = time.perf_counter() - t0
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), "examples_per_s": steps * cfg.batch_size / dt}
        # with --ema the averaged weights are validated, kept as best and exported; the raw ones train on
        with average.applied() if average else contextlib.nullcontext():
            if has_val:
                entry.update({f"val_{k}": v for k, v in evaluate_split(model, data, "val", cfg.knn_k).items()
                              if k in ("knn_top1", "classifier_top1", "bird_auc", "bird_f1")})
            metric = selection_metric(entry, cfg.loss)
            with writer.as_default():
                for k, v in entry.items():
                    if k != "epoch" and v is not None:
                        tf.summary.scalar(k, v, step=epoch)
            if metric > best_var.numpy():
                best_var.assign(metric)
                stale_var.assign(0)
                model.save_weights(best_path)
                fileio.write_json(fileio.join(cfg.ckpt_dir, "best", "best.json"), entry)
            else:
                stale_var.assign_add(1)
        epoch_var.assign(epoch)
        history.append(entry)
        fileio.write_json(history_path, history)  # before the checkpoint: a kill between trains it again
        manager.save(checkpoint_number=epoch)
        log("train: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()
                                  if v is not None))

    if fileio.exists(best_path + ".index"):
        model.load_weights(best_path)
    elif average:
        average.finalize()
    metrics = {"model": cfg.model, "loss": cfg.loss, "params": int(model.count_params()),
               "classes": data.classes, "epochs_trained": int(epoch_var.numpy()),
               "best": json.loads(fileio.read_text(fileio.join(cfg.ckpt_dir, "best", "best.json")))
               if fileio.exists(fileio.join(cfg.ckpt_dir, "best", "best.json")) else None,
               "test": evaluate_split(model, data, "test", cfg.knn_k), "history": history}
    fileio.write_json(fileio.join(cfg.ckpt_dir, "metrics.json"), metrics)
    export.export(model, data.classes, data.tft_dir, fileio.join(cfg.ckpt_dir, "export"), feature_cfg)
    return metrics
