"""The api's side of the supervisor's control socket (`<run_dir>/control`, smartcity/supervisor.py):
one JSON request line, one JSON answer line."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from smartcity.supervisor import CONTROL_MAX_BYTES, CONTROL_NAME

#: The supervisor's answers are short; anything longer is not one.
MAX_ANSWER_BYTES = 64 * 1024


class ControlUnavailable(Exception):
    """No supervisor answers on the control socket (the message says why)."""


def control_request(
    run_dir: str | Path, request: dict[str, Any], timeout_s: float = 5.0
) -> dict[str, Any]:
    path = Path(run_dir) / CONTROL_NAME
    line = json.dumps(request).encode() + b"\n"
    if len(line) > CONTROL_MAX_BYTES:
        raise ValueError(f"the request is longer than {CONTROL_MAX_BYTES} bytes")
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(path))
            s.sendall(line)
            while b"\n" not in data and len(data) < MAX_ANSWER_BYTES:
                chunk = s.recv(MAX_ANSWER_BYTES - len(data))
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlUnavailable(f"no control socket {path}: is `smartcity run` running?") from None
    except OSError as e:
        raise ControlUnavailable(f"the control socket {path} does not answer: {e}") from None
    try:
        answer = json.loads(data.split(b"\n", 1)[0].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlUnavailable(
            f"the control socket {path} answered something else than JSON"
        ) from None
    if not isinstance(answer, dict):
        raise ControlUnavailable(f"the control socket {path} answered {type(answer).__name__}")
    return answer
