"""Content-generation service vs gRPC's hello-world Greeter, and scaling out to two processes.

Measures, in one run on this machine:

1. unary round-trip latency (p50/p99) of a small generation (Generate,
   max_tokens=8) against the Greeter's SayHello, both servers started here;
2. time to first token (p50/p99): the first chunk of GenerateStream against
   the first reply of the Greeter's SayHelloStreamReply;
3. throughput (RPC/s) of small Generate calls with one server process and with
   two, the client balancing over them with round_robin.

Run from the repository root:
    python bench/bench_grpc.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.grpc_greeter import HelloRequest, greeter_stub
from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.gen.contentgen.v1 import contentgen_pb2_grpc as pb_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"
PROMPT = "The socket module"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, grpcio {grpc.__version__}"


class Process:
    """A server child process, stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(timeout=30)


def wait_for_port(port: int, process: Process, health: bool) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while True:
            if process.popen.poll() is not None:
                raise SystemExit(f"server on port {port} exited early; see {process.log}")
            try:
                if health:
                    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                else:
                    grpc.channel_ready_future(channel).result(timeout=1)
                    return
            except (grpc.RpcError, grpc.FutureTimeoutError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server on port {port} did not start; see {process.log}")
            time.sleep(0.05)


def start_contentgen(cache_dir: Path, log_dir: Path) -> tuple[Process, int]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONTENTGEN_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        CONTENTGEN_TOKEN=TOKEN,
        CONTENTGEN_CACHE_DIR=str(cache_dir),
        CONTENTGEN_MAX_CONCURRENCY="32",
    )
    process = Process(
        [sys.executable, "-m", "contentgen_service", "serve", "--bind", f"127.0.0.1:{port}"],
        env,
        log_dir / f"contentgen-{port}.log",
    )
    wait_for_port(port, process, health=True)
    return process, port


def start_greeter(log_dir: Path) -> tuple[Process, int]:
    port = free_port()
    process = Process(
        [sys.executable, str(REPO_ROOT / "bench" / "grpc_greeter.py"), "--port", str(port)],
        dict(os.environ),
        log_dir / f"greeter-{port}.log",
    )
    wait_for_port(port, process, health=False)
    return process, port


def timed(call: Callable[[int], object], count: int, warmup: int) -> list[float]:
    """Return the duration in ms of ``count`` calls, after ``warmup`` untimed ones."""
    for i in range(warmup):
        call(i)
    durations = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        durations.append((time.perf_counter() - started) * 1000.0)
    return durations


def first_message_ms(stream: object) -> float:
    """Time until a streaming call yields its first message; the rest is drained untimed."""
    started = time.perf_counter()
    iterator = iter(stream)  # type: ignore[call-overload]
    next(iterator)
    elapsed = (time.perf_counter() - started) * 1000.0
    for _ in iterator:
        pass
    return elapsed


def measure_latency(content_port: int, greeter_port: int, calls: int, max_tokens: int) -> dict[str, list[float]]:
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    results: dict[str, list[float]] = {}
    with (
        grpc.insecure_channel(f"127.0.0.1:{content_port}") as content,
        grpc.insecure_channel(f"127.0.0.1:{greeter_port}") as greeter,
    ):
        stub = pb_grpc.ContentGenerationStub(content)
        say_hello, say_hello_stream = greeter_stub(greeter)

        def request(i: int) -> pb.GenerateRequest:
            return pb.GenerateRequest(request_id=f"bench-{i}", user_id=1, prompt=PROMPT, max_tokens=max_tokens, seed=i)

        results["contentgen unary"] = timed(lambda i: stub.Generate(request(i), metadata=metadata), calls, 50)
        results["greeter unary"] = timed(lambda i: say_hello(HelloRequest(name=f"bench {i}")), calls, 50)
        first_chunk = [first_message_ms(stub.GenerateStream(request(i), metadata=metadata)) for i in range(calls + 50)]
        results["contentgen ttft"] = first_chunk[50:]
        first_reply = [first_message_ms(say_hello_stream(HelloRequest(name=f"bench {i}"))) for i in range(calls + 50)]
        results["greeter ttft"] = first_reply[50:]
    return results


def load_worker(target: str, seconds: float, threads: int, max_tokens: int, start_at: float) -> tuple[int, int]:
    """Issue Generate calls from ``threads`` threads for ``seconds``; return (ok, failed)."""
    from contentgen_service.client import ClientConfig, ContentGenClient, GenerationParams
    from contentgen_service.client_errors import ContentGenError

    client = ContentGenClient(ClientConfig(target=target, token=TOKEN, max_attempts=1, timeout_seconds=30))
    client.generate(GenerationParams(request_id="warmup", user_id=1, prompt=PROMPT, max_tokens=max_tokens))
    counts = [0, 0]
    lock = threading.Lock()
    time.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + seconds

    def loop(worker: int) -> None:
        ok = failed = 0
        i = 0
        while time.monotonic() < end:
            i += 1
            try:
                client.generate(
                    GenerationParams(request_id=f"load-{worker}-{i}", user_id=1, prompt=PROMPT, max_tokens=max_tokens)
                )
                ok += 1
            except ContentGenError:
                failed += 1
        with lock:
            counts[0] += ok
            counts[1] += failed

    pool = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    client.close()
    return counts[0], counts[1]


def measure_throughput(ports: list[int], args: argparse.Namespace, max_tokens: int) -> tuple[float, int]:
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # after every worker process has started and warmed up
    with context.Pool(args.client_processes) as pool:
        results = pool.starmap(
            load_worker,
            [(target, args.seconds, args.threads, max_tokens, start_at)] * args.client_processes,
        )
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    return ok / args.seconds, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="timed calls per latency measurement (default 500)")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens per generation for latency (default 8)")
    parser.add_argument(
        "--load-max-tokens",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[8, 64],
        help="tokens per generation for throughput, comma-separated (default 8,64)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each throughput run (default 8)")
    parser.add_argument("--client-processes", type=int, default=2, help="load-generating processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per load process (default 8)")
    args = parser.parse_args()

    work = REPO_ROOT / "var" / "bench-grpc"
    work.mkdir(parents=True, exist_ok=True)
    cache_dir = work / "model-cache"
    processes: list[Process] = []
    try:
        print(f"machine: {machine()}", flush=True)
        content, content_port = start_contentgen(cache_dir, work)  # trains the model on first run
        greeter, greeter_port = start_greeter(work)
        processes += [content, greeter]
        print(f"latency: {args.calls} calls each, max_tokens={args.max_tokens} ...", flush=True)
        latency = measure_latency(content_port, greeter_port, args.calls, args.max_tokens)
        greeter.stop()
        print(
            f"throughput: {args.client_processes} client processes x {args.threads} threads, {args.seconds:g} s each ...",
            flush=True,
        )
        one_server = {n: measure_throughput([content_port], args, n) for n in args.load_max_tokens}
        second, second_port = start_contentgen(cache_dir, work)
        processes.append(second)
        two_servers = {n: measure_throughput([content_port, second_port], args, n) for n in args.load_max_tokens}
    finally:
        for process in processes:
            process.stop()

    def row(label: str, key: str, fraction: float) -> str:
        ours, base = percentile(latency[f"contentgen {key}"], fraction), percentile(latency[f"greeter {key}"], fraction)
        return f"| {label} | {ours:.2f} ms | {base:.2f} ms | {ours / base:.1f}x |"

    print()
    print("| measurement | contentgen | Greeter | ratio |")
    print("| --- | --- | --- | --- |")
    print(row("unary round trip p50", "unary", 0.50))
    print(row("unary round trip p99", "unary", 0.99))
    print(row("time to first token / first reply p50", "ttft", 0.50))
    print(row("time to first token / first reply p99", "ttft", 0.99))
    print()
    print(
        "| throughput (Generate) | 1 server process | 2 server processes (round_robin) | ratio 2 / 1 | failed calls |"
    )
    print("| --- | --- | --- | --- | --- |")
    for n in args.load_max_tokens:
        (one, failed_one), (two, failed_two) = one_server[n], two_servers[n]
        print(
            f"| max_tokens={n} | {one:.0f} RPC/s ({one * n:.0f} tokens/s) | {two:.0f} RPC/s ({two * n:.0f} tokens/s) "
            f"| {two / one:.2f}x | {failed_one + failed_two} |"
        )
    print()
    print(f"mean contentgen unary: {statistics.fmean(latency['contentgen unary']):.2f} ms; machine: {machine()}")


if __name__ == "__main__":
    main()
