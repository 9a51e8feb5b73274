/* Writes demo.npy, stored.npz and compressed.npz with known values into the
 * directory given as argv[1], for tests/check_numpy_reads.py to open with
 * numpy.load. Keep the values here and the expectations there in step.
 * compressed.npz's 'big' (3.7 MB: four 1 MiB deflate chunks) carries the
 * chunk index. */
#include <stdio.h>
#include <stdlib.h>

#include "sinkgrad.h"

static sg_tensor *ramp(sg_dtype dt, int ndim, const int64_t *shape, double scale, double offset) {
  sg_tensor *t = sg_empty(NULL, dt, ndim, shape);
  for (int64_t i = 0; i < t->numel; i++) sg_set(t, i, (double)i * scale + offset);
  return t;
}

static int write_npz(const char *path, bool compress, sg_io_error *err) {
  int64_t counts[5];
  for (int i = 0; i < 5; i++) counts[i] = -3 * i;
  int32_t ids[4] = {7, -1, 0, INT32_MIN};
  uint8_t pixels[6] = {250, 251, 252, 253, 254, 255}, mask[4] = {1, 0, 0, 1};
  sg_array a_counts = {SG_NPY_I64, 1, {5}, 5, counts};
  sg_array a_ids = {SG_NPY_I32, 2, {2, 2}, 4, ids};
  sg_array a_pixels = {SG_NPY_U8, 1, {6}, 6, pixels};
  sg_array a_mask = {SG_NPY_BOOL, 1, {4}, 4, mask};
  sg_tensor *weights = ramp(SG_F64, 2, (int64_t[]){2, 3}, 0.125, 0);
  sg_tensor *empty = ramp(SG_F32, 2, (int64_t[]){0, 3}, 1, 0);
  sg_tensor *big = ramp(SG_F64, 2, (int64_t[]){920, 500}, 0.25, 0);

  sg_npz_writer *w = sg_npz_writer_open(path, compress, err);
  int rc = w ? 0 : -1;
  if (rc == 0)
    rc = sg_npz_add_tensor(w, "weights", weights, err) ||
         sg_npz_add_array(w, "counts", &a_counts, err) || sg_npz_add_array(w, "ids", &a_ids, err) ||
         sg_npz_add_array(w, "pixels", &a_pixels, err) ||
         sg_npz_add_array(w, "mask", &a_mask, err) || sg_npz_add_tensor(w, "empty", empty, err) ||
         sg_npz_add_scalar_f64(w, "lr", 0.001, err) ||
         sg_npz_add_scalar_i64(w, "step", INT64_C(123456789012), err) ||
         (compress && sg_npz_add_tensor(w, "big", big, err));
  if (w && rc)
    sg_npz_writer_abort(w);
  else if (w)
    rc = sg_npz_writer_close(w, err);
  sg_free(weights);
  sg_free(empty);
  sg_free(big);
  return rc ? -1 : 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  char path[4096];
  sg_io_error err;
  sg_tensor *demo = ramp(SG_F32, 2, (int64_t[]){3, 4}, 0.5, -1);
  snprintf(path, sizeof path, "%s/demo.npy", argv[1]);
  int rc = sg_npy_save(path, demo, &err);
  sg_free(demo);
  if (rc == 0) {
    snprintf(path, sizeof path, "%s/stored.npz", argv[1]);
    rc = write_npz(path, false, &err);
  }
  if (rc == 0) {
    snprintf(path, sizeof path, "%s/compressed.npz", argv[1]);
    rc = write_npz(path, true, &err);
  }
  if (rc != 0) {
    fprintf(stderr, "npz_writer_demo: %s\n", err.msg);
    return 1;
  }
  return 0;
}
