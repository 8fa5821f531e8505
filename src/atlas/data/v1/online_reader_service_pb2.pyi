from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResidencyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESIDENCY_MODE_UNSPECIFIED: _ClassVar[ResidencyMode]
    RESIDENCY_MODE_OFF: _ClassVar[ResidencyMode]
    RESIDENCY_MODE_LOCKED: _ClassVar[ResidencyMode]
    RESIDENCY_MODE_POPULATED: _ClassVar[ResidencyMode]
    RESIDENCY_MODE_OVER_LIMIT: _ClassVar[ResidencyMode]
RESIDENCY_MODE_UNSPECIFIED: ResidencyMode
RESIDENCY_MODE_OFF: ResidencyMode
RESIDENCY_MODE_LOCKED: ResidencyMode
RESIDENCY_MODE_POPULATED: ResidencyMode
RESIDENCY_MODE_OVER_LIMIT: ResidencyMode

class GetReaderStatsRequest(_message.Message):
    __slots__ = ("since_monotonic_ns", "include_calls")
    SINCE_MONOTONIC_NS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CALLS_FIELD_NUMBER: _ClassVar[int]
    since_monotonic_ns: int
    include_calls: bool
    def __init__(self, since_monotonic_ns: _Optional[int] = ..., include_calls: bool = ...) -> None: ...

class ReaderPhase(_message.Message):
    __slots__ = ("name", "count", "p50_us", "p99_us", "p999_us", "max_us")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    P50_US_FIELD_NUMBER: _ClassVar[int]
    P99_US_FIELD_NUMBER: _ClassVar[int]
    P999_US_FIELD_NUMBER: _ClassVar[int]
    MAX_US_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ..., p50_us: _Optional[float] = ..., p99_us: _Optional[float] = ..., p999_us: _Optional[float] = ..., max_us: _Optional[float] = ...) -> None: ...

class ReaderCalls(_message.Message):
    __slots__ = ("start_monotonic_ns", "auth_ns", "lookup_ns", "serialize_ns", "write_ns", "minor_faults", "major_faults", "involuntary_switches", "entities", "ok")
    START_MONOTONIC_NS_FIELD_NUMBER: _ClassVar[int]
    AUTH_NS_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_NS_FIELD_NUMBER: _ClassVar[int]
    SERIALIZE_NS_FIELD_NUMBER: _ClassVar[int]
    WRITE_NS_FIELD_NUMBER: _ClassVar[int]
    MINOR_FAULTS_FIELD_NUMBER: _ClassVar[int]
    MAJOR_FAULTS_FIELD_NUMBER: _ClassVar[int]
    INVOLUNTARY_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    start_monotonic_ns: _containers.RepeatedScalarFieldContainer[int]
    auth_ns: _containers.RepeatedScalarFieldContainer[int]
    lookup_ns: _containers.RepeatedScalarFieldContainer[int]
    serialize_ns: _containers.RepeatedScalarFieldContainer[int]
    write_ns: _containers.RepeatedScalarFieldContainer[int]
    minor_faults: _containers.RepeatedScalarFieldContainer[int]
    major_faults: _containers.RepeatedScalarFieldContainer[int]
    involuntary_switches: _containers.RepeatedScalarFieldContainer[int]
    entities: _containers.RepeatedScalarFieldContainer[int]
    ok: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, start_monotonic_ns: _Optional[_Iterable[int]] = ..., auth_ns: _Optional[_Iterable[int]] = ..., lookup_ns: _Optional[_Iterable[int]] = ..., serialize_ns: _Optional[_Iterable[int]] = ..., write_ns: _Optional[_Iterable[int]] = ..., minor_faults: _Optional[_Iterable[int]] = ..., major_faults: _Optional[_Iterable[int]] = ..., involuntary_switches: _Optional[_Iterable[int]] = ..., entities: _Optional[_Iterable[int]] = ..., ok: _Optional[_Iterable[bool]] = ...) -> None: ...

class ReaderProcessCounters(_message.Message):
    __slots__ = ("minor_faults", "major_faults", "voluntary_switches", "involuntary_switches", "user_cpu_us", "system_cpu_us", "run_delay_ns", "threads", "slice_ns", "threads_with_slice", "slice_error")
    MINOR_FAULTS_FIELD_NUMBER: _ClassVar[int]
    MAJOR_FAULTS_FIELD_NUMBER: _ClassVar[int]
    VOLUNTARY_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    INVOLUNTARY_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    USER_CPU_US_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_CPU_US_FIELD_NUMBER: _ClassVar[int]
    RUN_DELAY_NS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    SLICE_NS_FIELD_NUMBER: _ClassVar[int]
    THREADS_WITH_SLICE_FIELD_NUMBER: _ClassVar[int]
    SLICE_ERROR_FIELD_NUMBER: _ClassVar[int]
    minor_faults: int
    major_faults: int
    voluntary_switches: int
    involuntary_switches: int
    user_cpu_us: int
    system_cpu_us: int
    run_delay_ns: int
    threads: int
    slice_ns: int
    threads_with_slice: int
    slice_error: str
    def __init__(self, minor_faults: _Optional[int] = ..., major_faults: _Optional[int] = ..., voluntary_switches: _Optional[int] = ..., involuntary_switches: _Optional[int] = ..., user_cpu_us: _Optional[int] = ..., system_cpu_us: _Optional[int] = ..., run_delay_ns: _Optional[int] = ..., threads: _Optional[int] = ..., slice_ns: _Optional[int] = ..., threads_with_slice: _Optional[int] = ..., slice_error: _Optional[str] = ...) -> None: ...

class StoreResidency(_message.Message):
    __slots__ = ("mode", "store_bytes", "held_bytes", "locked_bytes", "resident_bytes", "limit_bytes", "memlock_rlimit_bytes", "error", "can_lock_unlimited")
    MODE_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HELD_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOCKED_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMLOCK_RLIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CAN_LOCK_UNLIMITED_FIELD_NUMBER: _ClassVar[int]
    mode: ResidencyMode
    store_bytes: int
    held_bytes: int
    locked_bytes: int
    resident_bytes: int
    limit_bytes: int
    memlock_rlimit_bytes: int
    error: str
    can_lock_unlimited: bool
    def __init__(self, mode: _Optional[_Union[ResidencyMode, str]] = ..., store_bytes: _Optional[int] = ..., held_bytes: _Optional[int] = ..., locked_bytes: _Optional[int] = ..., resident_bytes: _Optional[int] = ..., limit_bytes: _Optional[int] = ..., memlock_rlimit_bytes: _Optional[int] = ..., error: _Optional[str] = ..., can_lock_unlimited: bool = ...) -> None: ...

class GetReaderStatsResponse(_message.Message):
    __slots__ = ("now_monotonic_ns", "calls_total", "calls_failed", "calls_summarized", "phases", "calls", "process", "residency")
    NOW_MONOTONIC_NS_FIELD_NUMBER: _ClassVar[int]
    CALLS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CALLS_FAILED_FIELD_NUMBER: _ClassVar[int]
    CALLS_SUMMARIZED_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    now_monotonic_ns: int
    calls_total: int
    calls_failed: int
    calls_summarized: int
    phases: _containers.RepeatedCompositeFieldContainer[ReaderPhase]
    calls: ReaderCalls
    process: ReaderProcessCounters
    residency: StoreResidency
    def __init__(self, now_monotonic_ns: _Optional[int] = ..., calls_total: _Optional[int] = ..., calls_failed: _Optional[int] = ..., calls_summarized: _Optional[int] = ..., phases: _Optional[_Iterable[_Union[ReaderPhase, _Mapping]]] = ..., calls: _Optional[_Union[ReaderCalls, _Mapping]] = ..., process: _Optional[_Union[ReaderProcessCounters, _Mapping]] = ..., residency: _Optional[_Union[StoreResidency, _Mapping]] = ...) -> None: ...
