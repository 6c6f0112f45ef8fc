/* Everything a plugin author includes. */
#ifndef ETNAS_ETNAS_H
#define ETNAS_ETNAS_H

#include <etnas/arch.h>
#include <etnas/attention.h>
#include <etnas/host.h>
#include <etnas/plugin.h>
#include <etnas/proxy.h>
#include <etnas/rng.h>
#include <etnas/search.h>
#include <etnas/task.h>

#endif
