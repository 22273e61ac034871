"""One error hierarchy, used in practice: every class is a ``StreamlibError`` that is also
the builtin plain Python would raise, the library raises its own classes (no bare
``ValueError``/``RuntimeError``/``TypeError``), and each kind of failure gets its class."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from streamlib.actors.compositor import CompositorActor
from streamlib.actors.patterns import TestPatternActor
from streamlib.actors.shader import ShaderActor
from streamlib.actors.transform import TransformActor
from streamlib.clocks import SoftwareClock
from streamlib.errors import (
    ActorStateError, ClockClosedError, ClosedError, ConfigError, ConfigTypeError,
    FrameValidationError, PortError, PTPError, RTPError, SDPError, StreamlibError,
    UnavailableError,
)
from streamlib.gpu import kernels as K
from streamlib.net.audio_codec import decode_samples
from streamlib.net.pacing import PacedSender
from streamlib.net.pgroup import pack_rgb, parse_format
from streamlib.net.ptp import PTPSlave
from streamlib.net.ptp_codec import parse_message
from streamlib.net.rfc4175 import VideoPacketizer, split_packets
from streamlib.net.sdp import parse_sdp
from streamlib.net.udp import check_multicast_interface, parse_dest
from streamlib.net.video_sender import VideoStreamSender

ROOT = Path(__file__).resolve().parents[1]
BARE = ("ValueError", "RuntimeError", "TypeError")

# Files still raising bare builtins, each with why. Permanent entries need a reason that
# holds for good; keep this list short.
ALLOWED: dict[str, str] = {}


def _bare_raises(path: Path) -> list[str]:
    """``line: builtin`` for each ``raise ValueError(...)`` etc. (or bare name) in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BARE:
                found.append(f"{node.lineno}: {exc.id}")
    return found


def test_the_library_raises_its_own_classes_not_bare_builtins() -> None:
    offenders = {}
    for path in sorted((ROOT / "streamlib").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        if found := _bare_raises(path):
            offenders[rel] = found
    assert offenders == {}, "raise a class from streamlib/errors.py (ConfigError...)"


def test_the_allow_lists_name_only_files_that_still_need_them() -> None:
    stale = [rel for rel in ALLOWED
             if not (ROOT / rel).exists() or not _bare_raises(ROOT / rel)]
    assert stale == []


def test_each_class_is_a_streamlib_error_and_the_matching_builtin() -> None:
    expect: dict[type[Exception], tuple[type[BaseException], ...]] = {
        ConfigError: (ValueError,), ConfigTypeError: (ConfigError, TypeError),
        FrameValidationError: (ValueError,), RTPError: (ValueError,), SDPError: (ValueError,),
        PTPError: (ValueError,), ClosedError: (ActorStateError, RuntimeError),
        ClockClosedError: (ClosedError,), UnavailableError: (RuntimeError,),
        PortError: (KeyError,),
    }
    for cls, bases in expect.items():
        assert issubclass(cls, StreamlibError) and all(issubclass(cls, b) for b in bases), cls


# -- configuration ----------------------------------------------------------------------
def test_bad_parameters_raise_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^TestPatternActor: width and height must be ints "
                                          r"> 0, got 0x360$"):
        TestPatternActor(width=0)
    with pytest.raises(ConfigError, match=r"^unknown video format 'nope'"):
        parse_format("nope")
    with pytest.raises(ConfigError, match=r"^invalid destination 'x': expected 'host:port'"):
        parse_dest("x")
    with pytest.raises(ConfigError, match=r"^multicast_interface must be an IPv4 address \(the "
                                          r"interface's address, e.g. '127.0.0.1'\), got 5$"):
        check_multicast_interface(5)
    with pytest.raises(ConfigError, match=r"^VideoPacketizer: 2x0 is outside 1..32767$"):
        VideoPacketizer("YCbCr-4:2:2/10", 2, 0)


def test_a_parameter_of_the_wrong_type_is_a_config_type_error() -> None:
    with pytest.raises(ConfigTypeError, match=r"^TransformActor: field 'fn' must be callable "
                                              r"or a name, got 3$"):
        TransformActor(fn=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigTypeError, match=r"^ShaderActor: inputs must be a list of port "
                                              r"names, got str 'a'$"):
        ShaderActor(inputs="a", fragment_source="void main() {}")  # type: ignore[arg-type]
    with pytest.raises(ConfigTypeError, match=r"^fps must be a number or a string, got True$"):
        SoftwareClock(fps=True)


def test_an_unknown_compositor_layer_is_a_port_error() -> None:
    comp = CompositorActor(width=8, height=8, actor_id="comp")
    with pytest.raises(PortError, match=r"^CompositorActor 'comp': no layer 'nope' "
                                        r"\(layers: none\)$"):
        comp.remove_layer("nope")


# -- data ---------------------------------------------------------------------------------
def test_frame_content_is_a_frame_validation_error() -> None:
    with pytest.raises(FrameValidationError, match=r"^expected an \(H, W, 3\|4\) uint8 RGB\(A\) "
                                                   r"frame, got \(2, 2\) uint8$"):
        pack_rgb(np.zeros((2, 2), np.uint8), parse_format("RGB/8"))
    with pytest.raises(FrameValidationError, match=r"^composite: layers must be \(h, w, 3\|4\) "
                                                   r"uint8, got \(2, 2, 2\) torch.uint8$"):
        K.composite(8, 8, layers=[(torch.zeros(2, 2, 2, dtype=torch.uint8), 0, 0, 1.0)])


def test_malformed_wire_data_gets_its_protocol_error() -> None:
    with pytest.raises(SDPError, match=r"^SDP line 2 'bogus': expected '<type>=<value>'$"):
        parse_sdp("v=0\nbogus\n")
    with pytest.raises(PTPError, match=r"^PTP message too short: 10 bytes, the header needs 34$"):
        parse_message(bytes(10))
    with pytest.raises(RTPError, match=r"^capture truncated in a length prefix at byte 0$"):
        split_packets(b"\0\0")
    with pytest.raises(RTPError, match=r"^L24 payload of 5 bytes is not a whole number of "
                                       r"2-channel sample frames \(6 bytes each\)$"):
        decode_samples(bytes(5), "L24", 2)


# -- closed resources -----------------------------------------------------------------------
def test_using_a_closed_sender_or_slave_is_a_closed_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", 9))
        paced = PacedSender(sock, 1.0)
        paced.close()
        with pytest.raises(ClosedError, match=r"^PacedSender is closed$"):
            paced.submit([b"x"])
        video = VideoStreamSender(sock, VideoPacketizer("YCbCr-4:2:2/10", 8, 2), 30.0)
        buf = video.acquire()
        assert buf is not None
        video.close()
        with pytest.raises(ClosedError, match=r"^VideoStreamSender is closed$"):
            video.submit(buf, 0)
    slave = PTPSlave()
    slave.close()
    with pytest.raises(ClosedError, match=r"^PTPSlave is closed$"):
        slave.start()


def test_a_cuda_backend_without_cuda_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match=r"^composite: backend='cuda' needs a CUDA tensor "
                                               r"and CuPy; "):
        K.composite(8, 8, layers=[(torch.zeros(2, 2, 3, dtype=torch.uint8), 0, 0, 1.0)],
                    backend="cuda")
