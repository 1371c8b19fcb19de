"""The soak's memory samples: gunicorn's workers found in /proc, and a leak told from warm-up."""

from __future__ import annotations

from pathlib import Path

from locustfiles.memory import GunicornMemory, MemorySample, find_listening_master, memory_trend

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def fake_process(proc: Path, pid: int, ppid: int, rss_kb: int, sockets: tuple[int, ...] = ()) -> None:
    folder = proc / str(pid)
    (folder / "fd").mkdir(parents=True)
    (folder / "stat").write_text(f"{pid} (python (x)) S {ppid} 1 1 0 -1\n")
    (folder / "status").write_text(f"Name:\tpython\nVmRSS:\t{rss_kb} kB\n")
    for n, inode in enumerate(sockets, start=3):
        (folder / "fd" / str(n)).symlink_to(f"socket:[{inode}]")


def listening(proc: Path, *port_inodes: tuple[int, int]) -> None:
    (proc / "net").mkdir()
    rows = [
        f"   {n}: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 {inode} 1\n"
        for n, (port, inode) in enumerate(port_inodes)
    ]
    (proc / "net" / "tcp").write_text(TCP_HEADER + "".join(rows))


def test_the_app_server_is_the_master_of_the_processes_listening_on_the_hosts_port(tmp_path: Path) -> None:
    listening(tmp_path, (8000, 777), (8001, 888))
    fake_process(tmp_path, 1, 0, 1000)
    fake_process(tmp_path, 40, 1, 2000)
    fake_process(tmp_path, 50, 40, 30 * 1024, sockets=(777,))  # master
    fake_process(tmp_path, 51, 50, 60 * 1024, sockets=(777,))  # workers inherit the socket
    fake_process(tmp_path, 52, 50, 70 * 1024, sockets=(777,))
    fake_process(tmp_path, 60, 1, 10 * 1024, sockets=(888,))  # another server, another port
    assert find_listening_master(8000, tmp_path) == 50
    assert find_listening_master(8001, tmp_path) == 60
    sample = GunicornMemory(50, tmp_path).sample()
    assert sample is not None
    assert (sample.workers, sample.workers_rss_mb, sample.master_rss_mb) == (2, 130.0, 30.0)


def test_no_app_server_on_this_machine_means_no_samples(tmp_path: Path) -> None:
    listening(tmp_path, (8000, 777))
    fake_process(tmp_path, 1, 0, 1000)
    assert find_listening_master(9000, tmp_path) is None
    memory = GunicornMemory(find_listening_master(8000, tmp_path), tmp_path)
    assert not memory.available
    assert memory.sample() is None


def samples(values: list[float], every_s: float = 60) -> list[MemorySample]:
    return [MemorySample(i * every_s, 2, value, 30.0) for i, value in enumerate(values)]


def test_growth_during_warm_up_is_not_a_leak() -> None:
    trend = memory_trend(samples([100, 140, 150, 150, 150.5, 150, 150.2, 150, 150.1, 150]))
    assert trend is not None
    assert trend.late_slope_mb_per_hour <= 1
    assert trend.reading == "flat"
    assert (trend.first_mb, trend.last_mb, trend.peak_mb, trend.warmup_samples) == (100, 150, 150.5, 2)


def test_growth_that_slows_down_reads_as_warm_up_and_is_judged_on_its_late_pace() -> None:
    # Caches filling: fast at first, then slower and slower (the shape a 10-minute soak showed).
    trend = memory_trend(samples([280 + 8 * (1 - 0.8**i) for i in range(30)], every_s=20))
    assert trend is not None
    assert trend.late_slope_mb_per_hour < 0.75 * trend.slope_mb_per_hour
    assert trend.reading == "growth slowing (warming up)"


def test_steady_growth_reads_as_a_leak_and_is_reported_per_hour() -> None:
    trend = memory_trend(samples([100 + i for i in range(20)]))  # 1 MiB a minute, all along
    assert trend is not None
    assert trend.slope_mb_per_hour == trend.late_slope_mb_per_hour == 60
    assert trend.reading.startswith("steady growth")


def test_too_few_samples_give_no_trend() -> None:
    assert memory_trend(samples([100, 101, 102, 103, 104])) is None
