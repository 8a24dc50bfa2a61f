/* vmsnap core: memfile (to be written; see memfile.h for the contract). */
#include "memfile.h"
