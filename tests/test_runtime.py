"""The device-side runtime: preprocessing driven by the bundle, inputs of every kind, top-k, batches."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgeship.bundle import Preprocessing, Resize
from edgeship.errors import BundleError, InputError
from edgeship.runtime import Model, Preprocessor, RuntimeConfig, load_image
from tests.support import jpeg_bytes


def test_preprocess_matches_resize_then_centre_crop():
    """The one-resample crop box equals 'resize short side, then centre crop' (torchvision's recipe)."""
    rng = np.random.default_rng(0)
    # smooth content so the two resampling paths agree within interpolation error
    base = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    im = Image.fromarray(base).resize((320, 240), Image.BILINEAR)
    pre = Preprocessing(size=(112, 112), resize_to=128)
    x, meta = Preprocessor(pre)(im)
    ref_im = im.resize((171, 128), Image.BILINEAR)  # short side 240 -> 128
    left, top = (171 - 112) // 2, (128 - 112) // 2
    ref = np.asarray(ref_im.crop((left, top, left + 112, top + 112)), dtype=np.float32) / 255
    ref = ((ref - np.array(pre.mean, np.float32)) / np.array(pre.std, np.float32)).transpose(2, 0, 1)
    assert x.dtype == np.float32 and x.shape == (3, 112, 112)
    assert np.abs(x - ref).mean() < 0.12  # sub-pixel rounding of the reference's integer crop
    corner = ((np.asarray(ref_im.crop((0, 0, 112, 112)), np.float32) / 255 - np.array(pre.mean, np.float32))
              / np.array(pre.std, np.float32)).transpose(2, 0, 1)
    assert np.abs(x - corner).mean() > 0.3  # a wrong crop would not pass
    assert meta.width == 320 and meta.height == 240


def test_layout_colour_order_and_scale():
    arr = np.zeros((8, 8, 3), dtype=np.uint8)
    arr[..., 0] = 255  # pure red
    pre = Preprocessing(size=(8, 8), resize=Resize.DIRECT, resize_to=None, color="BGR", layout="NHWC",
                        scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x, _ = Preprocessor(pre)(arr)
    assert x.shape == (8, 8, 3) and x.dtype == np.float32
    assert x[0, 0].tolist() == [0.0, 0.0, 255.0]


def test_letterbox_keeps_aspect_and_maps_boxes_back():
    im = Image.new("RGB", (200, 100), (255, 255, 255))
    pre = Preprocessing(size=(64, 64), resize=Resize.LETTERBOX, resize_to=None, scale=1.0, mean=(0, 0, 0),
                        std=(1, 1, 1))
    x, meta = Preprocessor(pre)(im)
    assert x[:, 0, 32].tolist() == [114.0, 114.0, 114.0]  # padding above
    assert x[:, 32, 32].tolist() == [255.0, 255.0, 255.0]
    box = meta.to_original(np.array([[0, 16, 64, 48]], dtype=np.float32))
    assert np.allclose(box, [[0, 0, 200, 100]], atol=1)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_every_mode_becomes_rgb(mode):
    im = Image.new("RGB", (10, 10), (10, 200, 30)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        im = Image.fromarray(np.full((10, 10), 40000, dtype=np.uint16))
    out = load_image(im)
    assert out.mode == "RGB" and out.size == (10, 10)


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (20, 40)


def test_large_jpeg_uses_reduced_decode():
    from PIL import Image as PILImage

    big = io.BytesIO()
    PILImage.new("RGB", (2000, 1600), (90, 120, 150)).save(big, format="JPEG")
    pre = Preprocessor(Preprocessing(size=(32, 32), resize_to=36))
    im = pre.image(big.getvalue())
    assert 36 <= min(im.size) < 800  # decoded at 1/8 scale, not full size
    x, meta = pre(big.getvalue())
    assert x.shape == (3, 32, 32)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "0 bytes"),
        (b"hello, I am a text file" * 10, "not a recognised image"),
        (jpeg_bytes()[:200], "truncated or corrupt"),
    ],
)
def test_bad_image_bytes_are_input_errors(data, message):
    with pytest.raises(InputError, match=message):
        load_image(data)


def test_pixel_limit_guards_before_decoding():
    buf = io.BytesIO()
    Image.new("L", (300, 300)).save(buf, format="PNG")
    with pytest.raises(InputError, match="over the limit"):
        load_image(buf.getvalue(), max_pixels=10_000)


def test_model_predict_from_path_bytes_pil_and_array(tiny_bundle, tmp_path):
    model = Model.load(tiny_bundle.root, RuntimeConfig(intra_op_threads=1))
    raw = jpeg_bytes()
    path = tmp_path / "x.jpg"
    path.write_bytes(raw)
    results = [
        model.predict(path).output,
        model.predict(raw).output,
        model.predict(Image.open(io.BytesIO(raw))).output,
        model.predict(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))).output,
    ]
    assert all(r == results[0] for r in results)
    top = results[0]["classes"]
    assert len(top) == 4 and top[0]["label"].startswith("class-")
    assert abs(sum(c["score"] for c in top) - 1.0) < 1e-4  # softmax applied to logits
    pred = model.predict(path, top_k=2)
    assert len(pred.output["classes"]) == 2
    assert set(pred.timing_ms) == {"decode", "preprocess", "infer", "postprocess"}


def test_predict_raw_tensor_and_wrong_shape(tiny_bundle):
    model = Model.load(tiny_bundle.root)
    x = np.zeros((3, 16, 16), np.float32)
    assert len(model.predict(x).output["classes"]) == 4
    with pytest.raises(InputError, match=r"must have shape \[3, 16, 16\]"):
        model.predict(np.zeros((3, 8, 8), np.float32))


def test_batch_prediction_equals_one_by_one(tiny_bundle):
    model = Model.load(tiny_bundle.root)
    images = [jpeg_bytes(seed=i) for i in range(5)]
    batched = model.predict_batch(images, batch_size=4)
    single = [model.predict(i) for i in images]
    for a, b in zip(batched, single):
        assert [c["index"] for c in a.output["classes"]] == [c["index"] for c in b.output["classes"]]
        assert np.allclose([c["score"] for c in a.output["classes"]], [c["score"] for c in b.output["classes"]],
                           atol=1e-5)


def test_golden_check(tiny_bundle):
    check = Model.load(tiny_bundle.root).check_golden()
    assert check.ok and check.max_abs_error < 1e-5


def test_text_file_as_image_through_model(tiny_bundle, tmp_path):
    txt = tmp_path / "notes.jpg"
    txt.write_text("definitely not a jpeg")
    with pytest.raises(InputError, match="not a recognised image"):
        Model.load(tiny_bundle.root).predict(txt)


def test_runtime_config_validation():
    with pytest.raises(InputError, match="intra_op_threads"):
        RuntimeConfig(intra_op_threads=0)
    with pytest.raises(InputError, match="graph_optimization"):
        RuntimeConfig(graph_optimization="max")


def test_spinning_settings_reach_the_session(tiny_bundle):
    from edgeship.serve.config import ServeConfig, lone_runtime_config, runtime_config

    def entries(spinning, lone=False):
        make = lone_runtime_config if lone else runtime_config
        model = Model.load(tiny_bundle.root, make(ServeConfig(spinning=spinning)))
        opts = model.session.get_session_options()
        try:
            stop = opts.get_session_config_entry("session.force_spinning_stop")
        except RuntimeError:  # not set
            stop = None
        return opts.get_session_config_entry("session.intra_op.allow_spinning"), stop

    assert entries("auto") == ("0", None)  # batches: the threads sleep between runs
    assert entries("auto", lone=True) == ("1", None)  # the twin for a dense stream's lone requests spins
    assert entries("off") == ("0", None)
    assert entries("run") == ("1", "1")
    assert entries("on") == ("1", None)
    with pytest.raises(InputError, match="spinning: expected one of auto, off, run, on"):
        ServeConfig(spinning="fast")


def test_a_derived_twin_gives_the_same_outputs(tiny_bundle):
    model = Model.load(tiny_bundle.root, RuntimeConfig(allow_spinning=False))
    twin = model.derive(allow_spinning=True)
    assert twin.session is not model.session and twin.bundle is model.bundle
    assert twin.config.allow_spinning is True and model.config.allow_spinning is False
    x = np.random.default_rng(0).random((2, *model.input_shape[1:]), dtype=np.float32)
    np.testing.assert_array_equal(twin.run(x)[0], model.run(x)[0])


def test_unknown_provider_falls_back_to_cpu(tiny_bundle):
    model = Model.load(tiny_bundle.root, RuntimeConfig(providers=("TensorrtExecutionProvider",)))
    assert model.describe()["providers"][-1] == "CPUExecutionProvider"


def test_gguf_bundle_is_refused_by_onnx_runtime(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    with pytest.raises(BundleError, match="edgeship llm"):
        Model.load(f)


def test_grayscale_preprocessing_gives_one_channel():
    pre = Preprocessing(size=(28, 28), resize=Resize.DIRECT, resize_to=None, color="L", mean=(0.5,), std=(0.25,))
    x, _ = Preprocessor(pre)(jpeg_bytes(64, 64))
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    with pytest.raises(ValueError, match="mean: expected 1 values for color 'L'"):
        Preprocessing(color="L")
