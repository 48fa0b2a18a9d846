/* consumer_c DIR: creates a log in DIR through varve's C API, appends an
 * order's events with optimistic concurrency, reads them back, and exits 0
 * only if everything reads back as written. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <varve/varve_c.h>

#define TRY(call)                                                                   \
  do {                                                                              \
    if ((call) != VARVE_OK) {                                                       \
      fprintf(stderr, "consumer_c: %s: %s\n", #call, err.message);                  \
      return 1;                                                                     \
    }                                                                               \
  } while (0)

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  varve_error err;
  varve_log* log = NULL;
  TRY(varve_log_create(argv[1], NULL, &log, &err));

  const char* bodies[] = {"{\"placed\":1}", "{\"paid\":1}", "{\"shipped\":1}"};
  varve_event_data events[3];
  memset(events, 0, sizeof events);
  for (int i = 0; i < 3; ++i) {
    events[i].type = (uint32_t)i + 1;
    events[i].content = VARVE_CONTENT_JSON;
    events[i].payload = bodies[i];
    events[i].payload_size = strlen(bodies[i]);
  }
  const varve_stream_id order = varve_stream_bytes("order-17", 8);
  varve_append_result r;
  TRY(varve_append(log, order, varve_expect_no_stream(), &events[0], &r, &err));
  TRY(varve_append_batch(log, order, varve_expect_exact(1), &events[1], 2, &r, &err));
  if (varve_append(log, order, varve_expect_no_stream(), &events[0], NULL, &err) !=
          VARVE_WRONG_EXPECTED_VERSION || err.actual_version != 3) {
    fprintf(stderr, "consumer_c: the conflicting append was not refused\n");
    return 1;
  }
  TRY(varve_wait_durable(log, r.end, &err));

  varve_stream_reader* sr = NULL;
  TRY(varve_stream_read(log, order, 1, VARVE_FORWARD, UINT64_MAX, &sr, &err));
  varve_event ev;
  bool got;
  int n = 0;
  for (;;) {
    TRY(varve_stream_reader_next(sr, &ev, &got, &err));
    if (!got) break;
    if (ev.version != (uint64_t)n + 1 || ev.payload_size != strlen(bodies[n]) ||
        memcmp(ev.payload, bodies[n], ev.payload_size) != 0) {
      fprintf(stderr, "consumer_c: event %d read back wrong\n", n + 1);
      return 1;
    }
    printf("v%" PRIu64 " at %" PRIu64 ": %.*s\n", ev.version, ev.position, (int)ev.payload_size,
           (const char*)ev.payload);
    ++n;
  }
  varve_stream_reader_free(sr);
  TRY(varve_log_close(log, &err));
  if (n != 3) {
    fprintf(stderr, "consumer_c: read %d events, want 3\n", n);
    return 1;
  }
  printf("consumer_c: ok (varve %s)\n", varve_version());
  return 0;
}
