/* vmsnap core: manifest (to be written; see manifest.h for the contract). */
#include "manifest.h"
