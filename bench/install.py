"""What the bench installs for itself: Debian tools (nginx + Lua, wrk) and the peers under bench/.peers/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / ".peers"
APT_PACKAGES = ("nginx", "libnginx-mod-http-lua", "wrk")
LUA_MODULE = Path("/usr/lib/nginx/modules/ngx_http_lua_module.so")
LITELLM_SPEC = "litellm[proxy]"
PORTKEY_SPEC = "@portkey-ai/gateway@1.15.x"
INSTALL_TIMEOUT = 900


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def system_tools() -> None:
    """apt-get the tools if any is missing (apt-get update first); never touches a running system nginx."""
    if shutil.which("nginx") and shutil.which("wrk") and shutil.which("taskset") and LUA_MODULE.exists():
        return
    _log(f"installing {' '.join(APT_PACKAGES)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=INSTALL_TIMEOUT)
    subprocess.run(["apt-get", "install", "-y", "-qq", *APT_PACKAGES, "util-linux"], check=True, env=env,
                   timeout=INSTALL_TIMEOUT)


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    """Run an install step; None when it worked, else the last line of its output as the reason."""
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cmd[0]}: {exc}"
    if out.returncode == 0:
        return None
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[-1] if lines else f"{cmd[0]} exited {out.returncode}"


def litellm() -> str | None:
    """LiteLLM's proxy in its own venv, bench/.peers/litellm; None when ready, else why not."""
    venv = PEERS / "litellm"
    if (venv / "bin" / "litellm").exists():
        return None
    _log(f"installing {LITELLM_SPEC} into {venv}")
    PEERS.mkdir(parents=True, exist_ok=True)
    python = shutil.which("python3") or sys.executable
    return _run([python, "-m", "venv", str(venv)]) or _run(
        [str(venv / "bin" / "pip"), "install", "--quiet", LITELLM_SPEC])


def portkey() -> str | None:
    """Portkey's Node gateway from npm into bench/.peers/portkey; None when ready, else why not."""
    home = PEERS / "portkey"
    if (home / "node_modules/@portkey-ai/gateway/build/start-server.js").exists():
        return patch_portkey()
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not installed"
    _log(f"installing {PORTKEY_SPEC} into {home}")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "package.json").exists():
        (home / "package.json").write_text('{"name": "sluice-bench-portkey", "private": true}\n')
    return _run(["npm", "install", "--no-audit", "--no-fund", PORTKEY_SPEC], cwd=home) or patch_portkey()


# Portkey 1.15 appends headers to the upstream's own fetch Response when it relays it untouched (streams,
# embeddings): undici throws `TypeError: immutable` and the gateway answers 500 (its issues #1389/#1550).
# The workaround copies the Response first when its headers are immutable; nothing else changes.
PORTKEY_BUG = "updateHeaders(e,t,a){return e.headers.append(E.LAST_USED_OPTION_INDEX,this.context.index.toString()),"
PORTKEY_FIX = ("updateHeaders(e,t,a){try{e.headers.append(E.LAST_USED_OPTION_INDEX,this.context.index.toString())}"
               "catch{e=new Response(e.body,e);e.headers.append(E.LAST_USED_OPTION_INDEX,"
               "this.context.index.toString())}return ")
PORTKEY_CALL = ("this.updateHeaders(i,n.cacheStatus,o),{response:i,",
                "i=this.updateHeaders(i,n.cacheStatus,o),{response:i,")


def patch_portkey() -> str | None:
    """Apply the immutable-headers workaround to the installed build once; None when applied."""
    script = PEERS / "portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
    text = script.read_text()
    if PORTKEY_FIX in text:
        return None
    if PORTKEY_BUG not in text or PORTKEY_CALL[0] not in text:
        return "Portkey build differs from 1.15.2: immutable-headers workaround not applicable"
    script.write_text(text.replace(PORTKEY_BUG, PORTKEY_FIX).replace(*PORTKEY_CALL))
    return None
