"""InferenceActor, OverlayBoxesActor and BrightBoxDetector: exact detections against
TestPatternActor's truth, stamps, batching, hooks, failure isolation, model strings,
pipeline files, the example, and (marked) the CUDA stream path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from streamlib import (
    Actor, DataMessage, Runtime, StreamInput, TestPatternActor, TimedTick, VirtualClock,
)
from streamlib.core.actor import ActorStatus
from streamlib.actors.inference import BrightBoxDetector, InferenceActor, resolve_object, to_cpu
from streamlib.actors.overlay import OverlayBoxesActor, draw_boxes
from streamlib.core.frames import VideoFrame
from streamlib.control.pipeline import load_pipeline
from streamlib.actors.compositor import CompositorActor
from streamlib.testing import ActorHarness

ROOT = Path(__file__).resolve().parents[2]
W, H, BOX = 160, 90, 16


class Sink(Actor):
    """Keeps every item of input ``port`` (read_all_new, large ring)."""

    def __init__(self, port: str = "data", raw: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.port, self.raw = port, raw
        self.inputs[port] = StreamInput(port, slots=64)
        self.got: list[Any] = []

    def process(self, tick: TimedTick) -> None:
        for item in self.inputs[self.port].read_all_new():  # host copies (CUDA: after the work)
            if self.raw:
                pass
            elif isinstance(item, (DataMessage, VideoFrame)):
                item = to_cpu(item)
            self.got.append(item)


def source(frames: int) -> TestPatternActor:
    return TestPatternActor(W, H, pattern="moving_box", box_size=BOX,
                            clock=VirtualClock(30, max_ticks=frames))


def truth(src: TestPatternActor, n: int) -> list[float]:
    x, y = src.box_position(n)
    return [float(x), float(y), float(x + BOX), float(y + BOX)]


# -- factories for "module:name" strings -----------------------------------------------
class Scale(torch.nn.Module):
    def __init__(self, factor: float = 2.0) -> None:
        super().__init__()
        self.factor = torch.nn.Parameter(torch.tensor(float(factor)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def make_scale(factor: float = 2.0) -> Scale:
    return Scale(factor)


def mean_pre(frame: VideoFrame) -> torch.Tensor:
    return frame.data.float().mean().reshape(1, 1)


def tag_post(output: torch.Tensor, frame: VideoFrame) -> dict[str, Any]:
    return {"value": output, "frame": frame.frame_number}


# -- detection, stamps, graph ---------------------------------------------------------
def test_detector_finds_the_box_exactly_and_stamps_match_frames() -> None:
    n = 40  # long enough for the box to bounce off the right edge (x span 144, 8 px/frame)
    with Runtime() as rt:
        src = source(n)
        infer = InferenceActor(BrightBoxDetector(), topic="boxes", actor_id="detector")
        video, data = Sink("video"), Sink("data")
        src >> infer >> data
        src >> video
        assert rt.run(60)
        assert infer.status is ActorStatus.RUNNING, infer.error
        graph = rt.graph()
    assert [m.frame_number for m in data.got] == list(range(n))
    for msg, frame in zip(data.got, video.got):
        assert isinstance(msg, DataMessage) and msg.topic == "boxes"
        assert (msg.timestamp_ns, msg.frame_number, msg.clock_id) == \
            (frame.timestamp_ns, frame.frame_number, frame.clock_id)
        assert msg.payload["boxes"].tolist() == [truth(src, msg.frame_number)]
        assert msg.payload["scores"].tolist() == [1.0]
        assert msg.metadata["model"] == "BrightBoxDetector"
    assert max(src.box_position(i)[0] for i in range(n)) == W - BOX  # it did bounce
    node = next(a for a in graph["actors"] if a["id"] == "detector")
    assert node["inference"]["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert node["inference"]["frames_in"] == n and node["inference"]["results_out"] == n
    json.dumps(graph)


def test_detector_reports_nothing_on_a_dark_frame() -> None:
    x = torch.full((1, 3, 8, 8), 16 / 255)
    out = BrightBoxDetector()(x)
    assert out["boxes"].tolist() == [[[0.0, 0.0, 0.0, 0.0]]] and out["scores"].tolist() == [[0.0]]


def test_batch_of_two_keeps_count_order_and_runs_pairs() -> None:
    seen_batches: list[int] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        seen_batches.append(int(x.shape[0]))
        return x.mean(dim=(1, 2, 3))

    with Runtime() as rt:
        src = source(7)
        infer = InferenceActor(model, batch=2)
        data = Sink("data")
        src >> infer >> data
        assert rt.run(60)
    # 7 frames, batch 2: three full batches; the last frame waits for a partner forever
    assert seen_batches == [2, 2, 2]
    assert [m.frame_number for m in data.got] == [0, 1, 2, 3, 4, 5]
    assert infer.frames_in == 7 and infer.batches_run == 3 and infer.results_out == 6
    for msg in data.got:  # the per-frame slice of the batched output: its own mean
        frame = src.render(msg.frame_number)
        assert msg.payload.dim() == 0
        assert abs(float(msg.payload) - float(frame.float().mean()) / 255) < 1e-5


def test_batched_detector_is_still_exact() -> None:
    with Runtime() as rt:
        src = source(12)
        infer = InferenceActor(BrightBoxDetector(), batch=3)
        data = Sink("data")
        src >> infer >> data
        assert rt.run(60)
    assert [m.frame_number for m in data.got] == list(range(12))
    assert all(m.payload["boxes"].tolist() == [truth(src, m.frame_number)] for m in data.got)


def test_preprocess_and_postprocess_hooks_by_callable_and_string() -> None:
    calls: list[int] = []

    def post(output: torch.Tensor, frame: VideoFrame) -> dict[str, Any]:
        calls.append(frame.frame_number)
        return tag_post(output, frame)

    for pre, post_hook in ((mean_pre, post), ("tests.actors.test_inference:mean_pre", "tests.actors.test_inference:tag_post")):
        with ActorHarness(InferenceActor, Scale(3.0), preprocess=pre, postprocess=post_hook) as h:
            img = torch.full((4, 4, 3), 10, dtype=torch.uint8)
            h.feed("video", VideoFrame(img, timestamp_ns=123, frame_number=9))
            out = h.tick()
        (msg,) = out["data"]
        assert msg.payload["frame"] == 9 and msg.timestamp_ns == 123
        assert msg.payload["value"].tolist() == [30.0]  # mean 10, scaled by 3, batch dim gone
    assert calls == [9]


def test_video_output_from_a_float_chw_model() -> None:
    img = torch.randint(0, 256, (6, 5, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with ActorHarness(InferenceActor, lambda x: 1.0 - x, output="video") as h:
        h.feed("video", VideoFrame(img, timestamp_ns=5, frame_number=2))
        (frame,) = h.tick()["video"]
    assert isinstance(frame, VideoFrame) and frame.format.value == "rgb24"
    assert (frame.timestamp_ns, frame.frame_number) == (5, 2)
    assert torch.equal(frame.data, 255 - img)


def test_a_uint8_video_output_leaves_inference_mode() -> None:
    # The compositor's scale cache reads _version, which inference tensors lack.
    def to_bytes(x: torch.Tensor) -> torch.Tensor:
        return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # (N, H, W, C)

    with ActorHarness(InferenceActor, to_bytes, output="video") as h:
        data = torch.full((4, 6, 3), 77, dtype=torch.uint8)
        h.feed("video", VideoFrame(data, timestamp_ns=5, frame_number=2))
        (frame,) = h.tick()["video"]
    assert not frame.data.is_inference() and frame.data._version >= 0  # readable
    assert frame.data[0, 0].tolist() == [77, 77, 77] and frame.frame_number == 2
    comp = CompositorActor(8, 8, layers={"ai": {"scale": 2.0}})
    out = comp.render(None, {"ai": frame})
    assert out[7, 7].tolist() == [77, 77, 77]


def test_a_model_that_raises_fails_only_its_actor() -> None:
    def model(x: torch.Tensor) -> torch.Tensor:
        if float(x.max()) > 0:  # every frame has the bright box
            raise RuntimeError("model exploded")
        return x

    with Runtime() as rt:
        src = source(10)
        infer = InferenceActor(model)
        video = Sink("video")
        src >> infer
        src >> video
        assert rt.run(60)
        assert infer.status is ActorStatus.FAILED and "model exploded" in (infer.error or "")
        assert src.status is ActorStatus.RUNNING and video.status is ActorStatus.RUNNING
    assert len(video.got) == 10


def test_to_cpu_keeps_structure_and_host_tensors() -> None:
    t = torch.arange(3)
    out = to_cpu({"a": t, "b": [t, (t, 1)], "c": "x"})
    assert out["a"] is t and out["b"][0] is t and out["b"][1][0] is t
    assert out["b"][1][1] == 1 and out["c"] == "x"


# -- configuration ---------------------------------------------------------------------
def test_model_strings_resolve_factories_classes_and_instances() -> None:
    a = InferenceActor("tests.actors.test_inference:make_scale", model_kwargs={"factor": 5.0})
    assert isinstance(a.model, Scale) and float(a.model.factor) == 5.0
    b = InferenceActor("streamlib.actors.inference:BrightBoxDetector", model_kwargs={"threshold": 0.3})
    assert isinstance(b.model, BrightBoxDetector)
    assert resolve_object("streamlib.actors.inference:InferenceActor.default_preprocess") is \
        InferenceActor.default_preprocess


@pytest.mark.parametrize("model, kwargs, error, message", [
    ("nocolon", {}, ValueError, "is not of the form 'package.module:name'"),
    ("no_such_module_xyz:f", {}, ValueError, "cannot import module 'no_such_module_xyz'"),
    ("streamlib.actors.inference:Nope", {}, ValueError, "has no attribute 'Nope'"),
    ("tests.actors.test_inference:make_scale", {"model_kwargs": {"bogus": 1}}, ValueError, "raised TypeError"),
    (None, {}, ValueError, "model is required"),
    (42, {}, TypeError, "model must be callable"),
    (Scale(), {"model_kwargs": {"factor": 1}}, ValueError, "only apply to a model given as a string"),
    (Scale(), {"batch": 0}, ValueError, "batch must be an int >= 1"),
    (Scale(), {"output": "boxes"}, ValueError, "output must be 'data' or 'video'"),
    (Scale(), {"dtype": "int8"}, ValueError, "dtype must be one of"),
    (Scale(), {"input": "not a port"}, ValueError, "input must be a port name"),
    (Scale(), {"preprocess": "tests.actors.test_inference:nothing_here"}, ValueError, "has no attribute"),
    (Scale(), {"postprocess": 3}, TypeError, "postprocess must be callable"),
])
def test_bad_configuration_raises_at_construction_naming_the_field(
        model: Any, kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="InferenceActor 'bad'") as info:
        InferenceActor(model, actor_id="bad", **kwargs)
    assert message in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA exists here")
def test_cuda_device_without_cuda_is_a_construction_error() -> None:
    with pytest.raises(ValueError, match="InferenceActor 'gpu'.*CUDA is not available"):
        InferenceActor(Scale(), device="cuda", actor_id="gpu")


def test_pipeline_file_names_the_model_by_string(tmp_path: Path) -> None:
    path = tmp_path / "infer.yaml"
    path.write_text(f"""
name: infer
clocks:
  video: {{fps: 30}}
actors:
  box:    {{type: TestPatternActor, clock: video, width: {W}, height: {H}, box_size: {BOX}}}
  detect: {{type: "streamlib.actors.inference:InferenceActor",
           model: "streamlib.actors.inference:BrightBoxDetector", topic: boxes}}
  draw:   {{type: "streamlib.actors.overlay:OverlayBoxesActor", color: [0, 255, 0]}}
connections:
  - box -> detect
  - detect.data -> draw.data
  - box.video -> draw.video
""")
    with Runtime() as rt:
        pipe = load_pipeline(path).build(rt, mode="offline", seconds=1.0)
        assert rt.run(60)
        detect, draw = pipe["detect"], pipe["draw"]
        assert isinstance(detect, InferenceActor) and isinstance(draw, OverlayBoxesActor)
        assert detect.results_out == 30 and draw.drawn == 30 and draw.unmatched == 0


# -- overlay -----------------------------------------------------------------------------
def test_draw_boxes_paints_exactly_the_outline() -> None:
    img = torch.zeros((12, 16, 3), dtype=torch.uint8)
    out = draw_boxes(img, torch.tensor([[2.0, 3.0, 10.0, 9.0], [0, 0, 4, 4]]), (9, 8, 7), 2,
                     keep=torch.tensor([True, False]))
    mask = torch.zeros((12, 16), dtype=torch.bool)
    mask[3:9, 2:10] = True
    mask[5:7, 4:8] = False  # the interior, 2 px in from each side
    assert torch.equal((out == torch.tensor([9, 8, 7], dtype=torch.uint8)).all(-1), mask)
    assert int(out[~mask].sum()) == 0 and int(img.sum()) == 0  # the input is untouched


def test_overlay_draws_each_frame_with_its_own_result() -> None:
    with Runtime() as rt:
        src = source(15)
        infer = InferenceActor(BrightBoxDetector(), batch=3)  # results lag their frames
        overlay = OverlayBoxesActor(color=(255, 0, 0), thickness=1)
        out = Sink("video")
        src >> infer >> overlay.inputs["data"]
        src >> overlay.inputs["video"]
        overlay >> out
        assert rt.run(60)
    assert [f.frame_number for f in out.got] == list(range(15))
    assert overlay.drawn == 15 and overlay.unmatched == 0
    for frame in out.got:
        x, y = src.box_position(frame.frame_number)
        assert frame.data[y, x].tolist() == [255, 0, 0]  # corner: outline
        assert frame.data[y + BOX - 1, x + BOX - 1].tolist() == [255, 0, 0]
        assert frame.data[y + 1, x + 1].tolist() == [235, 235, 235]  # inside: untouched
        assert frame.timestamp_ns == frame.frame_number * 1_000_000_000 // 30


def test_overlay_builds_its_paint_once_per_device_dtype_and_format(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # On CUDA each torch.tensor(..., device=cuda) is a blocking host->device copy.
    built: list[list[int]] = []
    real_tensor = torch.tensor

    def counting(data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        built.append(list(data))
        return real_tensor(data, *args, **kwargs)

    with ActorHarness(OverlayBoxesActor, sync=False, thickness=1, color=(9, 8, 7)) as h:
        h.feed("data", DataMessage(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), timestamp_ns=0))
        monkeypatch.setattr(torch, "tensor", counting)
        corners = []
        for i, fmt in enumerate(["rgb24", "rgb24", "rgba", "rgb24", "rgba"]):
            h.feed("video", VideoFrame(torch.zeros((4, 4, 4 if fmt == "rgba" else 3),
                                                   dtype=torch.uint8),
                                       timestamp_ns=i, frame_number=i, format=fmt))
            (frame,) = h.tick()["video"]
            corners.append(frame.data[0, 0].tolist())
    assert built == [[9, 8, 7], [9, 8, 7, 255]]
    assert corners == [[9, 8, 7], [9, 8, 7], [9, 8, 7, 255], [9, 8, 7], [9, 8, 7, 255]]


def test_overlay_without_results_releases_frames_after_max_pending() -> None:
    with ActorHarness(OverlayBoxesActor, max_pending=2) as h:
        frames = [VideoFrame(torch.zeros((4, 4, 3), dtype=torch.uint8), timestamp_ns=i,
                             frame_number=i) for i in range(4)]
        published = []
        for f in frames:
            h.feed("video", f)
            published += h.tick()["video"]
        assert [f.frame_number for f in published] == [0, 1]  # two still wait
        h.feed("data", DataMessage(torch.tensor([[0.0, 0.0, 4.0, 4.0]]), timestamp_ns=3,
                                   frame_number=3))
        published = h.tick()["video"]
        # frame 2's result can no longer come (3's arrived): it goes out with none
        assert [f.frame_number for f in published] == [2, 3]
        assert int(published[0].data.sum()) == 0 and published[1].data[0, 0].tolist() == [255, 0, 0]
        assert h.actor.unmatched == 3 and h.actor.drawn == 1


def test_overlay_score_threshold_and_bad_config() -> None:
    with ActorHarness(OverlayBoxesActor, sync=False, score_threshold=0.5) as h:
        h.feed("data", DataMessage({"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
                                    "scores": torch.tensor([0.2])}, timestamp_ns=0))
        h.feed("video", VideoFrame(torch.zeros((4, 4, 4), dtype=torch.uint8), timestamp_ns=0,
                                   format="rgba"))
        (frame,) = h.tick()["video"]
        assert int(frame.data.sum()) == 0  # below the threshold: not drawn
    with pytest.raises(ValueError, match="OverlayBoxesActor 'o': color"):
        OverlayBoxesActor(color=(1, 2), actor_id="o")
    with pytest.raises(ValueError, match="thickness must be an int >= 1"):
        OverlayBoxesActor(thickness=0)
    with pytest.raises(ValueError, match="OverlayBoxesActor 'o': device: unknown device 'tpu'"):
        OverlayBoxesActor(device="tpu", actor_id="o")
    with Runtime():  # never started
        assert OverlayBoxesActor(device="cpu").device == torch.device("cpu")


# -- the example -------------------------------------------------------------------------
def test_inference_overlay_example_detects_every_box() -> None:
    proc = subprocess.run([sys.executable, "examples/inference_overlay.py", "20"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    detections = [line for line in lines if line.startswith("frame")]
    assert len(detections) == 20
    for line in detections:
        found, real = line.split("detected ")[1].split(" truth ")
        assert found == real, line
    assert lines[-1].endswith("20/20 boxes exact, 20/20 overlays drawn")


# -- CUDA ----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_inference_runs_on_its_own_stream_without_host_sync() -> None:
    streams: list[int] = []
    det = BrightBoxDetector()

    class Spy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.det = det

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            streams.append(torch.cuda.current_stream().cuda_stream)
            return self.det(x)

    with Runtime() as rt:
        src = source(10)
        infer = InferenceActor(Spy(), dispatcher="thread")  # not the GPU dispatcher: own stream
        data = Sink("data", raw=True)
        src >> infer >> data
        assert rt.run(60)
        assert infer.status is ActorStatus.RUNNING, infer.error
    assert infer.device.type == "cuda" and infer.dtype == torch.float16
    assert infer.stream_source == "own"
    default = torch.cuda.default_stream(infer.device).cuda_stream
    assert streams and all(s == streams[0] != default for s in streams)
    from streamlib.gpu.device import ready_event

    for msg in data.got:
        boxes = msg.payload["boxes"]
        assert boxes.is_cuda and ready_event(msg) is not None
        assert to_cpu(msg).payload["boxes"].tolist() == [truth(src, msg.frame_number)]
