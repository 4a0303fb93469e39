#!/usr/bin/env python3
"""A real gRPC client (grpcio, with MLServer's generated KServe V2 stubs) for the proxy tests.

  grpc_infer.py <host:port> <model> [--calls N] [--pairs K]
Sends N ModelInfer calls for the iris input (a setosa and a virginica, K times over, as raw
tensor bytes) concurrently over one HTTP/2 connection, and prints one JSON line:
{"ok": [[class, ...], ...], "errors": ["CODE", ...]}. With K > 1 an answer that classifies
every pair as [0, 2] is reported as [0, 2], anything else as the error WRONG_ANSWER.
"""
import argparse
import json
from concurrent.futures import ThreadPoolExecutor

import grpc
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as pb_grpc


def request(model, pairs):
    data = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]
    if pairs == 1:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="predict", datatype="FP32", shape=[2, 4], contents=pb.InferTensorContents(fp32_contents=data)
        )
        return pb.ModelInferRequest(model_name=model, inputs=[tensor])
    import numpy

    raw = numpy.tile(numpy.array(data, dtype=numpy.float32), pairs).tobytes()
    tensor = pb.ModelInferRequest.InferInputTensor(name="predict", datatype="FP32", shape=[2 * pairs, 4])
    return pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[raw])


def classes(response):
    output = response.outputs[0]
    if response.raw_output_contents:
        import numpy

        return [int(x) for x in numpy.frombuffer(response.raw_output_contents[0], dtype=numpy.int64)]
    return [int(x) for x in output.contents.int64_contents]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("model")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=1)
    args = parser.parse_args()
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(args.target, options=options) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        message = request(args.model, args.pairs)

        def one(_):
            try:
                answer = classes(stub.ModelInfer(message, timeout=120))
            except grpc.RpcError as error:
                return ("error", error.code().name)
            if args.pairs > 1:
                return ("ok", [0, 2]) if answer == [0, 2] * args.pairs else ("error", "WRONG_ANSWER")
            return ("ok", answer)

        with ThreadPoolExecutor(max_workers=min(args.calls, 16)) as pool:
            results = list(pool.map(one, range(args.calls)))
    print(
        json.dumps(
            {"ok": [r for kind, r in results if kind == "ok"], "errors": [r for kind, r in results if kind == "error"]}
        )
    )


if __name__ == "__main__":
    main()
