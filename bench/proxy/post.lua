-- wrk: a small KServe V2 infer request (one iris flower), and the latency percentiles
-- bench/proxy.sh reads.
wrk.method = "POST"
wrk.body = '{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2]]}]}'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
    io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
            + summary.errors.timeout))
end
