import numpy as np
import triton_python_backend_utils as pb_utils

# Added to every input; tests copy this file with another value to make a new version.
INCREMENT = 1.0


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", (data + INCREMENT).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
