"""``make demo``: the single-agent memory loop, offline when there is no OpenAI key.

Starts ``memtrace serve`` on ./data unless a server already answers at MEMTRACE_URL,
creates an API key for org_default unless MEMTRACE_API_KEY is set, and, without
OPENAI_API_KEY, points the example at a local scripted Chat Completions server.
It runs the example twice so the second run shows the memory of the first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def main() -> None:
    url = os.environ.get("MEMTRACE_URL", "http://localhost:9100").rstrip("/")
    env = dict(os.environ, MEMTRACE_URL=url)
    server = None
    if not healthy(url):
        port = url.rsplit(":", 1)[-1]
        print(f"Starting memtrace serve on port {port} (data in ./data)")
        server = subprocess.Popen(
            [str(BIN / "memtrace"), "serve", "--port", port, "--data-dir", "data"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not healthy(url):
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("memtrace serve did not start")
            time.sleep(0.1)
    scripted = None
    try:
        if not env.get("MEMTRACE_API_KEY"):
            out = subprocess.run(
                [
                    str(BIN / "memtrace"),
                    "key",
                    "create",
                    "--org",
                    "org_default",
                    "--name",
                    f"demo-{int(time.time() * 1000)}",
                    "--data-dir",
                    "data",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            env["MEMTRACE_API_KEY"] = out.strip().splitlines()[-1]
        if not env.get("OPENAI_API_KEY"):
            sys.path.insert(0, str(HERE / "openai"))
            from scripted_openai import ScriptedChatServer

            scripted = ScriptedChatServer().start()
            env.update(OPENAI_API_KEY="scripted", OPENAI_BASE_URL=scripted.base_url)
            print("No OPENAI_API_KEY: using a local scripted stand-in for the model.\n")
        for run in (1, 2):
            print(f"===== run {run} =====")
            subprocess.run(
                [sys.executable, str(HERE / "openai" / "single_agent.py")], env=env, check=True
            )
            print()
    finally:
        if scripted is not None:
            scripted.stop()
        if server is not None:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
