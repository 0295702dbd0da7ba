"""`birdclef export --format tflite`: the served model as one LiteRT (TensorFlow Lite) flatbuffer, for phones,
single-board computers and other devices where neither TensorFlow nor ONNX Runtime fit.

The SavedModel's `serving_default` converts with TFLite's builtin ops only (the STFT and log-mel included),
so the file takes what the SavedModel takes, raw 32 kHz mono audio of any length (`waveform`, float32), and
returns the same outputs: `scores` [chunks, classes], `bird` [chunks], `embedding`, `chunk_start_s`. The
class names, in the order of `scores`' columns, and the feature settings are written beside it as
MODEL.json. Run it with the `ai-edge-litert` package (`from ai_edge_litert.interpreter import Interpreter`)
or `tf.lite.Interpreter`: `Interpreter(model_path=...).get_signature_runner()(waveform=audio)`.
`birdclef predict` serves ONNX or the SavedModel, not this file.
"""
from __future__ import annotations

import json

from birdclef import fileio


class TfliteError(Exception):
    pass


def export(ckpt_dir: str, out: str) -> str:
    """Convert CKPT_DIR's SavedModel (a run or an ensemble) into `out`; write `out`.json; return `out`."""
    from birdclef import predict
    from birdclef.features import import_tensorflow

    tf = import_tensorflow()
    saved = predict.find_export(ckpt_dir)
    if saved is None or str(saved).lower().endswith(".onnx"):
        raise TfliteError(f"{ckpt_dir}: no SavedModel to convert; fix: pass the --ckpt-dir of a finished run")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        flat = converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many kinds; one line says which model
        raise TfliteError(f"{ckpt_dir}: TFLite conversion failed ({str(e).splitlines()[0][:200]}); fix: use "
                          "`--format onnx`") from e
    info = json.loads(fileio.read_text(fileio.join(str(saved), "birdclef.json")))  # the export's classes
    fileio.write_bytes(out, flat)
    fileio.write_text(out + ".json", json.dumps({"classes": info["classes"], "features": info.get("features"),
                                                 "input": "waveform: float32 [samples], 32 kHz mono"}, indent=1))
    return out
