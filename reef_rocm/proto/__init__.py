"""The `reef serve` wire contract: ``reef.proto`` and the Python code protoc generated from it
(``reef_pb2``, ``reef_pb2_grpc``), checked in so hosts without grpcio-tools can run the server
and the client. After editing reef.proto, regenerate from the repository root with

    python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. \\
        reef_rocm/proto/reef.proto

(tests/server/test_proto.py regenerates into a temporary directory and fails when the
checked-in files differ). The generated code needs grpcio >= 1.85.1 and protobuf 7.x: the
``server`` extra.
"""

PROTOC_ARGS = ("-I.", "--python_out=.", "--grpc_python_out=.", "--pyi_out=.")
PROTO_FILE = "reef_rocm/proto/reef.proto"
GENERATED = ("reef_pb2.py", "reef_pb2.pyi", "reef_pb2_grpc.py")
SESSION_METADATA_KEY = "reef-session"  # metadata entry carrying the session token
