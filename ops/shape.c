#include "sinkgrad.h"
