"""A gateway with no database feature in use never imports SQLAlchemy or a database driver (~20 MB a worker)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Run in a fresh interpreter: other tests in this process import SQLAlchemy. It starts the app as a worker does
# (lifespan), serves a chat completion and the admin routes that answer without a database, and prints which
# database modules were imported.
SCRIPT = textwrap.dedent("""
    import asyncio, sys
    import httpx
    from sluice.app import create_app
    from sluice.config import parse_config
    from sluice.settings import Settings

    CONFIG = '''
    providers: {mock: {type: mock, chunk_delay_ms: 0}}
    models: [{name: mock, provider: mock, model: mock-1}]
    request_log: {enabled: %s}
    '''

    async def main() -> None:
        settings = Settings(api_keys=["sk-test"], admin_key="admin-key-for-tests", data_dir=sys.argv[1])
        app = create_app(parse_config(CONFIG, "<test>"), settings)
        messages = asyncio.Queue()
        sent = asyncio.Queue()
        await messages.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan"}, messages.get, sent.put))
        assert (await sent.get())["type"] == "lifespan.startup.complete"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sluice") as client:
            chat = await client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-test"},
                                     json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
            assert chat.status_code == 200, chat.text
            admin = {"X-API-Key": "admin-key-for-tests"}
            answers = [await client.get("/admin/logs", headers=admin), await client.get("/admin/usage", headers=admin),
                       await client.get("/admin/prompts", headers=admin),
                       await client.post("/admin/prompts", headers=admin,
                                         json={"name": "p", "messages": [{"role": "user", "content": "x"}]})]
            print("statuses:", *(answer.status_code for answer in answers))
        await messages.put({"type": "lifespan.shutdown"})
        await lifespan
        print("loaded:", *(name for name in ("sqlalchemy", "aiosqlite", "asyncpg", "alembic") if name in sys.modules))

    asyncio.run(main())
""")


def _run(request_log: bool, data_dir: Path) -> list[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLUICE_")}
    script = SCRIPT.replace("%s", str(request_log).lower())
    done = subprocess.run([sys.executable, "-c", script, str(data_dir)], capture_output=True, text=True, env=env,
                          cwd=data_dir.parent, timeout=60)
    assert done.returncode == 0, done.stderr
    found = dict(line.split(":", 1) for line in done.stdout.splitlines() if line.startswith(("statuses:", "loaded:")))
    return [found["statuses"].strip(), found["loaded"].strip()]


def test_no_database_feature_means_no_sqlalchemy(tmp_path: Path) -> None:
    """Request log off; managed keys on (the default) but no managed key presented: nothing opens a database."""
    statuses, loaded = _run(False, tmp_path / "data")
    assert statuses == "404 404 200 404"  # request_log_disabled twice, the configured prompts, prompt_store_disabled
    assert loaded == ""
    assert [path.name for path in (tmp_path / "data").iterdir()] == ["key-pepper"]  # the static key's id: no database


def test_the_request_log_loads_it(tmp_path: Path) -> None:
    """The same run with the request log on does import SQLAlchemy, so the test above can fail."""
    statuses, loaded = _run(True, tmp_path / "data")
    assert statuses == "200 200 200 201"
    assert "sqlalchemy" in loaded.split() and "aiosqlite" in loaded.split()
