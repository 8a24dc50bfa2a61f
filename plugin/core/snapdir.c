/* vmsnap core: snapdir (to be written; see snapdir.h for the contract). */
#include "snapdir.h"
