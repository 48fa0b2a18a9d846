// Everything public, in one include.
#pragma once

#include "varve/admin.h"
#include "varve/event.h"
#include "varve/file_system.h"
#include "varve/log.h"
#include "varve/options.h"
#include "varve/reader.h"
#include "varve/status.h"
#include "varve/type_registry.h"
#include "varve/types.h"
