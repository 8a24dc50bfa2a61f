/* vmsnap core: chain (to be written; see chain.h for the contract). */
#include "chain.h"
