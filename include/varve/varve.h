// Everything public, in one include.
#pragma once

#include "varve/admin.h"
#include "varve/consumer_group.h"
#include "varve/event.h"
#include "varve/event_filter.h"
#include "varve/file_system.h"
#include "varve/io_backend.h"
#include "varve/log.h"
#include "varve/metrics.h"
#include "varve/options.h"
#include "varve/reader.h"
#include "varve/replay.h"
#include "varve/snapshot.h"
#include "varve/status.h"
#include "varve/subscription.h"
#include "varve/type_registry.h"
#include "varve/types.h"
