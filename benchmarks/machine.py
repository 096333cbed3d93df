"""What machine a benchmark ran on: the runtime's machine facts (`runtime.machine`, which the doctor reports
too), re-exported under the name the benchmarks have always used."""
from __future__ import annotations

from runtime.machine import (cpu_has_bf16, cpu_model, format_machine, gpus, library_versions,  # noqa: F401
                             logical_cores, machine_info, memory_total_gib, physical_cores)
