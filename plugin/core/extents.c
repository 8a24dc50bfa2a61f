/* vmsnap core: extents (to be written; see extents.h for the contract). */
#include "extents.h"
