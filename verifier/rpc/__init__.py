"""The JSON-RPC wire, once for every chain.

client.py    one aiohttp transport (keep-alive, batches, per-endpoint concurrency, counters)
classify.py  every answer sorted where it arrives: result, retriable fault or final error
failover.py  the pool of ranked endpoints with retries, cool-downs and failover on top
"""
