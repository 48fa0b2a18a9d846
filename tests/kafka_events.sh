# Shared by the kafka_* tests (sourced): NDJSON events for `varve append`,
# mostly single appends, some atomic batches of 2-6, some with ids and binary
# payloads, some with metadata (Kafka headers once shipped), a few integer
# stream ids. gen N FIRST STREAMS SEED: N events
# numbered from FIRST, over STREAMS streams, seeded by SEED.
gen() {
  awk -v n="$1" -v first="$2" -v streams="$3" -v seed="$4" 'BEGIN {
    srand(seed); c = 0
    while (c < n) {
      s = int(rand() * streams); r = rand(); i = first + c
      if (r < 0.15) {
        k = 2 + int(rand() * 5); if (c + k > n) k = n - c
        line = "{\"stream\":\"s-" s "\",\"events\":["
        for (j = 0; j < k; j++)
          line = line (j ? "," : "") "{\"type\":\"Batched\",\"data\":{\"i\":" i + j ",\"j\":" j "}}"
        print line "]}"; c += k
      } else if (r < 0.25) {
        printf "{\"stream\":\"s-%d\",\"type\":\"Binary\",\"schema_version\":3,\"data_base64\":\"AAEC/w==\",\"event_id\":\"%08x-0000-4000-8000-%012x\",\"correlation_id\":\"%08x-1111-4000-8000-000000000000\",\"causation_id\":\"%08x-2222-4000-8000-000000000000\"}\n", s, i, s, i, i; c++
      } else if (r < 0.32) {
        printf "{\"stream\":\"s-%d\",\"type\":\"Tagged\",\"data\":%d,\"metadata\":{\"tenant\":\"t-%d\",\"trace\":\"%08x\"}}\n", s, i, s % 3, i; c++
      } else if (r < 0.27) {
        printf "{\"stream\":%d,\"type\":\"Counted\",\"data\":%d}\n", s, i; c++
      } else {
        printf "{\"stream\":\"s-%d\",\"type\":\"Happened\",\"data\":{\"i\":%d,\"text\":\"event number %d\"}}\n", s, i, i; c++
      }
    }
  }'
}
