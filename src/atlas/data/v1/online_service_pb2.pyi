from atlas.data.v1 import data_service_pb2 as _data_service_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetOnlineFeaturesRequest(_message.Message):
    __slots__ = ("read",)
    READ_FIELD_NUMBER: _ClassVar[int]
    read: _data_service_pb2.GetFeaturesRequest
    def __init__(self, read: _Optional[_Union[_data_service_pb2.GetFeaturesRequest, _Mapping]] = ...) -> None: ...

class GetOnlineFeaturesResponse(_message.Message):
    __slots__ = ("features",)
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _data_service_pb2.GetFeaturesResponse
    def __init__(self, features: _Optional[_Union[_data_service_pb2.GetFeaturesResponse, _Mapping]] = ...) -> None: ...
