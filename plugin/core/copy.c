/* vmsnap core: copy (to be written; see copy.h for the contract). */
#include "copy.h"
