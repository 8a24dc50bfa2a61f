/* vmsnap core: QMP (to be written; see qmp.h). */
#include "qmp.h"
