"""Load benchmark of the customer invoice list: full page, htmx fragment, bare baseline.

Run from the repo root::

    .venv/bin/python bench/portal_pages.py [--clients 50] [--seconds 8] [--workers 1]

What it does (bounded, cleans up after itself even on error):

1. creates a fresh PostgreSQL database (server from ``BENCH_DATABASE_URL``, default
   ``postgresql://postgres@127.0.0.1:5432/ledgerline_bench``, plus a random suffix),
   applies the real migrations, and seeds one issuing entity, one customer
   organization, one USD billing account, one viewer user and 10,000 invoices;
2. starts the real portal (``uvicorn --factory portal.app:create_app``, ``--workers``
   processes, as ``WEB_CONCURRENCY`` does in production) and a bare Litestar app
   (``bench/bare_app.py``) with the same uvicorn settings;
3. signs in once through the real login form and shares the session cookie between
   the concurrent clients (httpx, keep-alive, one connection per client);
4. runs each scenario for a warm-up plus ``--seconds``, then prints a table and a
   final ``result:`` line; the database is dropped and both servers stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from bench_support import (
    BENCH_REDIS_URL,
    ROOT,
    SECRET_KEY,
    create_database,
    database_urls,
    drop_database,
    free_port,
)

USER_EMAIL = "viewer@bench-holdings.example"
USER_PASSWORD = "bench-password-correct-horse"
INVOICE_COUNT = 10_000
PER_PAGE = 25  # the list's default page size
DEEP_PAGE = 50
WARMUP_SECONDS = 1.0
REQUEST_TIMEOUT = 30.0  # per request; a scenario can never run longer than this past its end
SERVER_START_TIMEOUT = 30.0
SEED = 20_251_122
_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


# --------------------------------------------------------------------------- database


INVOICE_COLUMNS = (
    "number",
    "billing_account",
    "issuing_entity",
    "status",
    "currency",
    "issue_date",
    "due_date",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "paid_minor",
    "balance_minor",
    "memo",
    "created_at",
    "finalized_at",
    "closed_at",
)


def _at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, dtime(hour, 0), tzinfo=UTC)


def invoice_records(
    rng: random.Random, account_id: int, entity_id: int, today: date, terms_days: int = 30
) -> list[tuple[Any, ...]]:
    """10,000 finalized invoices over ~2 years, numbered per year in issue-date order.

    Not yet due: mostly open. Past due: mostly paid, ~13% still open (overdue), a few
    void, and old unpaid ones sometimes written off as uncollectible.
    """
    first = today - timedelta(days=730)
    issued = sorted(first + timedelta(days=rng.randint(0, 730)) for _ in range(INVOICE_COUNT))
    sequence: Counter[int] = Counter()
    records = []
    for issue in issued:
        sequence[issue.year] += 1
        number = f"INV-US-{issue.year}-{sequence[issue.year]:06d}"
        due = issue + timedelta(days=terms_days)
        subtotal = round(math.exp(rng.uniform(math.log(5_000), math.log(5_000_000))))
        tax = round(subtotal * rng.choice((0, 0, 0.0725, 0.0825, 0.1)))
        total = subtotal + tax
        draw = rng.random()
        days_late = (today - due).days
        if days_late <= 0:
            status = "open" if draw < 0.80 else "paid" if draw < 0.98 else "void"
        elif draw < 0.82:
            status = "paid"
        elif draw < 0.95:
            status = "open"
        elif draw < 0.97 or days_late < 90:
            status = "void"
        else:
            status = "uncollectible"
        paid, closed = 0, None
        if status == "paid":
            paid = total
            closed = _at(min(today, issue + timedelta(days=rng.randint(3, 60))), 15)
        elif status == "open" and rng.random() < 0.25:
            paid = round(total * rng.uniform(0.1, 0.9))
        elif status == "uncollectible":
            paid = round(total * rng.uniform(0, 0.5)) if rng.random() < 0.3 else 0
            closed = _at(min(today, due + timedelta(days=rng.randint(90, 200))), 11)
        elif status == "void":
            closed = _at(min(today, issue + timedelta(days=rng.randint(1, 20))), 10)
        balance = total - paid if status == "open" else 0
        records.append(
            (
                number,
                account_id,
                entity_id,
                status,
                "USD",
                issue,
                due,
                subtotal,
                tax,
                total,
                paid,
                balance,
                "",
                _at(issue, 8),
                _at(issue, 9),
                closed,
            )
        )
    return records


@dataclass
class SeedInfo:
    by_status: dict[str, int]
    overdue: int
    seconds: float


async def seed(url: str, today: date) -> SeedInfo:
    from core.audit.log import Actor
    from core.db import bind_engine, make_engine
    from core.identity import services as identity
    from core.identity.roles import CustomerRole

    started = time.perf_counter()
    engine: Any = bind_engine(make_engine(url))
    await engine.start_connection_pool(min_size=1, max_size=2)
    try:
        entity_id = await identity.create_issuing_entity(
            code="US",
            name="Ledgerline US",
            legal_name="Ledgerline Inc.",
            country="US",
            functional_currency="USD",
            tax_registration="EIN 12-3456789",
            address="100 Market Street, San Francisco, CA 94105",
        )
        org_id = await identity.create_organization(
            name="Bench Holdings Inc.", country="US", address="1 Main Street, Austin, TX"
        )
        account_id = await identity.create_billing_account(
            code="BENCH-USD-1",
            name="Bench Holdings (USD)",
            organization_id=org_id,
            issuing_entity_id=entity_id,
            currency_code="USD",
            timezone="America/Chicago",
            payment_terms_days=30,
            bill_to_email="ap@bench-holdings.example",
        )
        user_id = await identity.create_user(
            email=USER_EMAIL,
            name="Bench Viewer",
            organization_id=org_id,
            password=USER_PASSWORD,
        )
        await identity.grant_role(user_id, org_id, CustomerRole.VIEWER, Actor.system("bench"))
    finally:
        await engine.close_connection_pool()

    records = invoice_records(random.Random(SEED), account_id, entity_id, today)
    conn = await asyncpg.connect(url, timeout=10)
    try:
        # Bench data only: the invoices are copied straight into the table, bypassing the
        # finalize service (numbering, ledger postings, audit) purely for setup speed. No
        # invoice lines either: the list page does not read them.
        await conn.copy_records_to_table("invoice", records=records, columns=INVOICE_COLUMNS)
        await conn.execute("ANALYZE")
        rows = await conn.fetch(
            "SELECT status, count(*) AS n, count(*) FILTER (WHERE due_date < $1) AS late"
            " FROM invoice GROUP BY status",
            today,
        )
    finally:
        await conn.close()
    by_status = {r["status"]: int(r["n"]) for r in rows}
    overdue = sum(int(r["late"]) for r in rows if r["status"] == "open")
    return SeedInfo(by_status, overdue, time.perf_counter() - started)


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def start_server(
    name: str, factory: str, env: dict[str, str], log_dir: Path, probe: str, workers: int = 1
) -> Server:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
                *(["--workers", str(workers)] if workers > 1 else []),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} server exited early:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + probe, timeout=1).status_code == 200:
                return server
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"{name} server not ready in {SERVER_START_TIMEOUT:.0f} s")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of a process and its direct children (uvicorn's worker processes)."""
    own = cpu_seconds(pid)
    if own is None:
        return None
    total = own
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 12 and fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy() -> tuple[int, int] | None:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def services_cpu_seconds() -> float:
    """CPU time of every PostgreSQL and Redis process on the machine (Linux /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        if comm == "postgres" or comm.startswith("redis-server"):
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def idle_busy_pct(seconds: float = 1.0) -> float | None:
    """Machine CPU use while the bench itself is idle: other tenants' load."""
    before = machine_busy()
    time.sleep(seconds)
    after = machine_busy()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100 * (after[0] - before[0]) / (after[1] - before[1])


# --------------------------------------------------------------------------- load


async def login(base_url: str) -> tuple[str, str]:
    """Sign in through the real form; returns the session cookie (name, value)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        form = await client.get("/login")
        match = _CSRF.search(form.text)
        if form.status_code != 200 or match is None:
            raise RuntimeError(f"GET /login: {form.status_code}, no CSRF field")
        response = await client.post(
            "/login",
            data={"email": USER_EMAIL, "password": USER_PASSWORD, "_csrf_token": match[1]},
        )
        if response.status_code != 303:
            raise RuntimeError(f"POST /login: {response.status_code} {response.text[:300]}")
        for name in ("__Host-ledgerline", "ledgerline_session"):
            if value := client.cookies.get(name):
                return name, value
    raise RuntimeError("no session cookie after signing in")


@dataclass
class Scenario:
    key: str
    label: str
    base_url: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    must_contain: tuple[str, ...] = ()
    must_not_contain: tuple[str, ...] = ()


@dataclass
class Result:
    scenario: Scenario
    requests: int  # completed inside the measurement window
    seconds: float
    latencies_ms: list[float]
    errors: int  # non-200 or transport errors, over the whole run (warm-up included)
    error_kinds: Counter[str]
    bytes_per_response: int
    server_cpu: float | None  # seconds of uvicorn CPU during the window
    client_cpu: float  # seconds of this process's CPU during the window
    machine_busy_pct: float | None  # whole machine, all cores
    other_pct: float | None  # of which: neither uvicorn, this process, PostgreSQL nor Redis

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """Nearest-rank percentile of the latencies (ms)."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def check_scenario(sc: Scenario) -> int:
    """One request up front: the status, and that it is the page it claims to be."""
    async with httpx.AsyncClient(
        base_url=sc.base_url, headers=sc.headers, cookies=sc.cookies, timeout=REQUEST_TIMEOUT
    ) as client:
        response = await client.get(sc.path)
    body = response.text
    problems = [f"status {response.status_code}"] if response.status_code != 200 else []
    problems += [f"missing {s!r}" for s in sc.must_contain if s not in body]
    problems += [f"unexpected {s!r}" for s in sc.must_not_contain if s in body]
    if problems:
        raise RuntimeError(f"{sc.label} ({sc.path}) is not what was expected: {problems}")
    return len(response.content)


async def run_scenario(sc: Scenario, clients: int, seconds: float, server_pid: int) -> Result:
    size = await check_scenario(sc)
    error_kinds: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=sc.base_url,
                    headers=sc.headers,
                    cookies=sc.cookies,
                    timeout=REQUEST_TIMEOUT,
                    limits=limits,
                )
            )
            for _ in range(clients)
        ]
        start = time.perf_counter()
        window_start = start + WARMUP_SECONDS
        window_end = window_start + seconds
        marks: dict[str, Any] = {}

        async def mark_window() -> None:
            await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
            marks["start"] = (
                tree_cpu_seconds(server_pid),
                time.process_time(),
                services_cpu_seconds(),
                machine_busy(),
            )
            await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
            marks["end"] = (
                tree_cpu_seconds(server_pid),
                time.process_time(),
                services_cpu_seconds(),
                machine_busy(),
            )

        async def worker(client: httpx.AsyncClient) -> list[float]:
            latencies: list[float] = []
            while (t0 := time.perf_counter()) < window_end:
                try:
                    response = await client.get(sc.path)
                    kind = "" if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                t1 = time.perf_counter()
                if kind:
                    error_kinds[kind] += 1
                elif window_start <= t1 <= window_end:
                    latencies.append((t1 - t0) * 1000)
            return latencies

        budget = WARMUP_SECONDS + seconds + REQUEST_TIMEOUT + 5
        marker = asyncio.create_task(mark_window())
        per_client = await asyncio.wait_for(
            asyncio.gather(*(worker(c) for c in pool)), timeout=budget
        )
        await marker
    latencies = [ms for chunk in per_client for ms in chunk]
    (srv0, cli0, svc0, busy0), (srv1, cli1, svc1, busy1) = marks["start"], marks["end"]
    busy_pct = other_pct = None
    if busy0 and busy1 and busy1[1] > busy0[1]:
        jiffies = busy1[1] - busy0[1]
        busy_pct = 100 * (busy1[0] - busy0[0]) / jiffies
        ours = (srv1 or 0) - (srv0 or 0) + (cli1 - cli0) + (svc1 - svc0)
        other_pct = max(0.0, busy_pct - 100 * ours * os.sysconf("SC_CLK_TCK") / jiffies)
    return Result(
        scenario=sc,
        requests=len(latencies),
        seconds=seconds,
        latencies_ms=latencies,
        errors=sum(error_kinds.values()),
        error_kinds=error_kinds,
        bytes_per_response=size,
        server_cpu=None if srv0 is None or srv1 is None else srv1 - srv0,
        client_cpu=cli1 - cli0,
        machine_busy_pct=busy_pct,
        other_pct=other_pct,
    )


# --------------------------------------------------------------------------- report


NOISY_OTHER_PCT = 15.0  # other tenants' CPU share above which a row is flagged


def print_table(results: list[Result], clients: int) -> None:
    header = (
        f"{'scenario':<36} {'requests':>8} {'req/s':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'KiB':>5} {'srv ms':>6} {'cli ms':>6} "
        f"{'busy':>5} {'other':>5}"
    )
    print(header)
    print("-" * len(header))

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f}%"

    noisy = False
    for r in results:
        srv = f"{1000 * r.server_cpu / r.requests:.1f}" if r.server_cpu and r.requests else "n/a"
        cli = f"{1000 * r.client_cpu / r.requests:.1f}" if r.requests else "n/a"
        flag = r.other_pct is not None and r.other_pct > NOISY_OTHER_PCT
        noisy = noisy or flag
        print(
            f"{r.scenario.label:<36} {r.requests:>8} {r.rps:>6.0f} {r.pct(50):>7.1f} "
            f"{r.pct(95):>7.1f} {r.pct(99):>7.1f} {r.errors:>6} "
            f"{r.bytes_per_response / 1024:>5.1f} {srv:>6} {cli:>6} "
            f"{pct(r.machine_busy_pct):>5} {pct(r.other_pct):>5}{' *' if flag else ''}"
        )
    for r in results:
        if r.errors:
            print(f"  errors in {r.scenario.label}: {dict(r.error_kinds)}")
    print(
        f"{clients} concurrent keep-alive clients, {results[0].seconds:g} s per scenario after "
        f"a {WARMUP_SECONDS:g} s warm-up. Latency: client-side time of one GET, body included. "
        "srv ms / cli ms: CPU time per request of the uvicorn processes / of this load "
        "generator. busy: whole machine (all cores); other: the part of it used by neither "
        "uvicorn, this process, PostgreSQL nor Redis (other tenants)."
    )
    if noisy:
        print(
            f"* other tenants used more than {NOISY_OTHER_PCT:.0f}% of the machine during "
            "this scenario: its req/s and latencies are understated; srv ms is the more "
            "robust figure."
        )
    for r in results:
        print(f"  {r.scenario.key}: GET {r.scenario.path} {r.scenario.headers or ''}".rstrip())


def _r(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.1f}"


# --------------------------------------------------------------------------- main


async def run_load(
    portal: Server, bare: Server, clients: int, seconds: float, deep_path: str
) -> list[Result]:
    cookie_name, cookie_value = await login(portal.url)
    cookies = {cookie_name: cookie_value}
    htmx = {"HX-Request": "true", "HX-Target": "invoice-results"}
    first = "/invoices?status=open&sort=-amount"
    page_marks = ("<html", 'data-testid="invoice-table"')
    fragment_marks = ('data-testid="invoice-table"',)
    deep_marks = (f"Showing {(DEEP_PAGE - 1) * PER_PAGE + 1}\u2013{DEEP_PAGE * PER_PAGE} of",)
    deep = "open, -amount" if "status=open" in deep_path else "all, due_date"
    scenarios = [
        Scenario("a", "a. page, open, -amount, p1", portal.url, first, {}, cookies, page_marks),
        Scenario(
            "b",
            f"b. page, {deep}, p{DEEP_PAGE}",
            portal.url,
            deep_path,
            {},
            cookies,
            page_marks + deep_marks,
        ),
        Scenario(
            "c1",
            "c. htmx partial, open, -amount, p1",
            portal.url,
            first,
            htmx,
            cookies,
            fragment_marks,
            ("<html",),
        ),
        Scenario(
            "c2",
            f"c. htmx partial, {deep}, p{DEEP_PAGE}",
            portal.url,
            deep_path,
            htmx,
            cookies,
            fragment_marks + deep_marks,
            ("<html",),
        ),
        Scenario("d", "d. bare Litestar /bare", bare.url, "/bare", {}, {}, ("ok",)),
    ]
    results = []
    for sc in scenarios:
        pid = (bare if sc.key == "d" else portal).process.pid
        results.append(await run_scenario(sc, clients, seconds, pid))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per scenario (8)")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes per server (1)"
    )
    args = parser.parse_args()
    clients = max(1, min(args.clients, 500))
    seconds = max(1.0, min(args.seconds, 120.0))
    workers = max(1, min(args.workers, 16))

    # Turn SIGTERM into SystemExit so the finally block below still cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench_started = time.perf_counter()
    var_dir = Path(tempfile.mkdtemp(prefix="ledgerline-bench-"))
    # The migration CLI (piccolo_conf) reads the settings too: keep its files in var_dir.
    os.environ["LEDGERLINE_VAR_DIR"] = str(var_dir)
    os.environ["SECRET_KEY"] = SECRET_KEY
    db_url, db_name, admin_url = database_urls()
    servers: list[Server] = []
    created = False
    try:
        from core.db import migrate

        asyncio.run(create_database(admin_url, db_name))
        created = True
        t = time.perf_counter()
        migrate(db_url)
        migrate_s = time.perf_counter() - t
        today = datetime.now(UTC).date()
        info = asyncio.run(seed(db_url, today))
        open_n = info.by_status.get("open", 0)
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(info.by_status.items()))
        print(
            f"database {db_name}: migrations {migrate_s:.1f} s; seeded {INVOICE_COUNT} invoices "
            f"in {info.seconds:.1f} s ({statuses}; {info.overdue} of the open ones overdue)"
        )
        if open_n >= DEEP_PAGE * PER_PAGE:
            deep_path = f"/invoices?status=open&sort=-amount&page={DEEP_PAGE}"
        else:  # fewer than 50 pages of open invoices: page through all of them instead
            deep_path = f"/invoices?sort=due_date&page={DEEP_PAGE}"

        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": BENCH_REDIS_URL,
            "LEDGERLINE_ENV": "test",
            "SECRET_KEY": SECRET_KEY,
            "LEDGERLINE_VAR_DIR": str(var_dir),
            "LOG_FORMAT": "json",
        }
        servers.append(
            start_server("portal", "portal.app:create_app", env, var_dir, "/health", workers)
        )
        servers.append(
            start_server("bare", "bench.bare_app:create_app", env, var_dir, "/bare", workers)
        )
        print(
            f"servers: portal {servers[0].url}, bare {servers[1].url} "
            f"(uvicorn, {workers} worker{'s' if workers > 1 else ''} each, uvloop/httptools "
            "if installed; portal logs JSON per request to a file)"
        )
        print(
            f"NOTE: the load generator (this process, {clients} httpx clients on one asyncio "
            f"loop) shares this {os.cpu_count()}-core machine with uvicorn, PostgreSQL and "
            "Redis: figures are pessimistic, and the bare baseline is likely capped by the "
            "client, not the server."
        )
        background = idle_busy_pct()
        if background is not None:
            print(
                f"background CPU use before the load (1 s sample, other processes): "
                f"{background:.0f}% of the machine"
                + (" -- NOISY MACHINE, figures will be low" if background > 15 else "")
            )
        print()
        results = asyncio.run(run_load(servers[0], servers[1], clients, seconds, deep_path))
        print_table(results, clients)
        by_key = {r.scenario.key: r for r in results}
        page, partial, bare = by_key["a"], by_key["c1"], by_key["d"]
        ratio = page.rps / bare.rps if bare.rps else float("nan")
        print()
        print(
            f"page/bare throughput ratio: {page.rps:.0f} / {bare.rps:.0f} = {ratio:.2f} "
            f"(partial/bare {partial.rps / bare.rps if bare.rps else float('nan'):.2f})"
        )
        errors = sum(r.errors for r in results)
        print(f"errors (non-200 or transport) over all scenarios: {errors}")
        print(f"bench wall time: {time.perf_counter() - bench_started:.0f} s")
        print(
            f"result: partial_rps={partial.rps:.0f} partial_p95_ms={_r(partial.pct(95))} "
            f"page_rps={page.rps:.0f} page_p95_ms={_r(page.pct(95))} "
            f"bare_rps={bare.rps:.0f} ratio={ratio:.2f} workers={workers}"
        )
        return 0
    except Exception as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        for server in servers:
            if tail := server.log_tail():
                print(f"--- {server.name} log tail ---\n{tail}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            stop_server(server)
        if created:
            try:
                asyncio.run(drop_database(admin_url, db_name))
            except Exception as exc:
                print(f"could not drop database {db_name}: {exc}", file=sys.stderr)
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
