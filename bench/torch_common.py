"""What the PyTorch suites (peer_torch.py, e2e_torch.py) share: the memory
check that skips cases too large for this machine, torch's build facts for the
JSON context, and the Google Benchmark-style row of a case that did not run."""


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def skip_reason(need, mem_fraction):
    """Why a case needing ~need bytes is skipped, or None when it fits."""
    if need > mem_fraction * mem_available():
        return f"skipped: needs ~{need / 2**30:.1f} GiB, more than {mem_fraction:.0%} of MemAvailable"
    return None


def config_value(text, key):
    """The value of the "key: value" line of torch.__config__ text, or "?"."""
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if key in ln), "?")


def error_row(base, error):
    """The iteration row of a case that failed or was skipped."""
    return dict(
        base,
        run_type="iteration",
        repetitions=0,
        repetition_index=0,
        iterations=0,
        real_time=0,
        cpu_time=0,
        error_occurred=True,
        error_message=error,
    )
