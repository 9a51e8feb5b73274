/* sinkgrad: reverse-mode automatic differentiation tensors in C, with
 * gradient-checked differentiable combinatorial layers. Include this one
 * header to get the whole public API. */
#ifndef SINKGRAD_H
#define SINKGRAD_H
#include "sg_tensor.h"
#include "sg_io.h"
#include "sg_autograd.h"
#include "sg_ops.h"
#include "sg_layers.h"
#include "sg_optim.h"
#include "sg_version.h"
#endif
