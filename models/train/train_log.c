/* The per-epoch CSV log of assoc_train_run. It only ever holds whole rows:
 * a fresh log appears with its header by temp file and rename, a row is
 * appended with one write and cut back off when that write fails (full
 * disk, file size limit), and a resumed run first drops what the
 * checkpoint does not cover (rows of epochs after it, a partial last line
 * from a run killed mid-write), so the rows it appends continue the log
 * without duplicates. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc_eval.h"
#include "models_internal.h"
#include "train_internal.h"

static void write_header(FILE *f, int M) {
  fprintf(f, "epoch,step,loss,train_rate,test_rate,violation_ratio");
  for (int m = 0; m < M; m++) fprintf(f, ",mu_%d", m);
  fprintf(f, ",lr,seconds,test_violation_ratio,test_lb_rate,excess,sinkhorn_near_kink,arena_mib\n");
}

/* The last column, arena_mib, is written only to a log whose header has it:
 * rows appended on resume to a log begun without it keep its columns. */
static void write_row(FILE *f, const assoc_epoch_stats *st, int M, bool arena_column) {
  fprintf(f, "%d,%lld,%.9g,%.9g,", st->epoch, (long long)st->step, st->loss, st->train_rate);
  if (st->has_test) fprintf(f, "%.9g", st->test.mean_rate);
  fprintf(f, ",%.9g", st->violation_ratio);
  for (int m = 0; m < M; m++) fprintf(f, ",%.9g", st->mu[m]);
  fprintf(f, ",%.9g,%.4f,", st->lr, st->seconds);
  /* without a test set the two test columns stay empty */
  if (st->has_test)
    fprintf(f, "%.9g,%.9g", st->test.violation_ratio, st->test.mean_lb_rate);
  else
    fputc(',', f);
  fprintf(f, ",%.9g,%.9g", st->excess_mean, st->sinkhorn_near_kink);
  if (arena_column) fprintf(f, ",%.6f", (double)st->arena_bytes / (1024.0 * 1024.0));
  fputc('\n', f);
}

static int header_cb(FILE *f, void *user) {
  write_header(f, *(const int *)user);
  return ferror(f) ? -1 : 0;
}

/* The length of the part of the log at path a run resumed after `epoch`
 * epochs keeps: the header and the rows up to that epoch, each a whole
 * line. 0 when there is no whole header (or no file). */
static long kept_length(const char *path, int epoch, bool *arena_column) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  long keep = 0, pos = 0;
  bool header = true;
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    size_t n = strlen(line);
    if (n == 0 || line[n - 1] != '\n') break; /* a partial (or overlong) last line */
    if (!header && strtol(line, NULL, 10) > epoch) break;
    if (header) *arena_column = n >= 11 && strcmp(line + n - 11, ",arena_mib\n") == 0;
    header = false;
    pos += (long)n;
    keep = pos;
  }
  fclose(f);
  return keep;
}

int assoc_log_open(assoc_train_log *log, const char *path, int resumed_epoch, int M,
                   sg_io_error *err) {
  *log = (assoc_train_log){.fd = -1, .path = path, .M = M, .last_row_at = -1};
  bool kept_arena_column = false;
  long keep = resumed_epoch >= 0 ? kept_length(path, resumed_epoch, &kept_arena_column) : 0;
  log->arena_column = keep == 0 || kept_arena_column;
  if (keep > 0 && truncate(path, keep) != 0)
    return assoc_fail(err, "%s: cannot trim the log to the resumed epoch %d: %s", path,
                      resumed_epoch, strerror(errno));
  if (keep == 0 && assoc_write_atomic(path, header_cb, &log->M, err)) return -1;
  log->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (log->fd < 0) return assoc_fail(err, "%s: cannot open the log: %s", path, strerror(errno));
  return 0;
}

/* One write() per row, so that a kill leaves whole rows; a failed or short
 * write is cut back off. */
int assoc_log_row(assoc_train_log *log, const assoc_epoch_stats *st, sg_io_error *err) {
  char *row = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&row, &len);
  if (!mem) return assoc_fail(err, "%s: out of memory", log->path);
  write_row(mem, st, log->M, log->arena_column);
  if (fclose(mem) != 0) return free(row), assoc_fail(err, "%s: out of memory", log->path);
  off_t before = lseek(log->fd, 0, SEEK_END);
  ssize_t put = write(log->fd, row, len);
  int saved = errno;
  free(row);
  log->last_row_at = before;
  if (put == (ssize_t)len) return 0;
  assoc_log_take_back(log);
  return assoc_fail(err, "%s: cannot write the log: %s", log->path,
                    put < 0 ? strerror(saved) : "short write");
}

void assoc_log_take_back(assoc_train_log *log) {
  if (log->last_row_at >= 0) (void)ftruncate(log->fd, log->last_row_at);
  log->last_row_at = -1;
}

int assoc_log_close(assoc_train_log *log, sg_io_error *err) {
  if (log->fd < 0) return 0;
  int rc = 0;
  if (fsync(log->fd) != 0 && errno != EINVAL)
    rc = assoc_fail(err, "%s: cannot write the log: %s", log->path, strerror(errno));
  if (close(log->fd) != 0 && !rc)
    rc = assoc_fail(err, "%s: cannot write the log: %s", log->path, strerror(errno));
  log->fd = -1;
  return rc;
}
