/* xent: version macros. Read by meson (cc.get_define) to set the library
 * version and the soname: the soname major is XENT_ABI_VERSION, which changes
 * only when the C ABI breaks, independently of the release version. */
#ifndef XENT_VERSION_H_
#define XENT_VERSION_H_

#define XENT_VERSION_MAJOR 0
#define XENT_VERSION_MINOR 1
#define XENT_VERSION_PATCH 0

/* ABI major: libxent.so.<XENT_ABI_VERSION>. Bumped only on an incompatible
 * change of include/xent/xent.h (which the ABI gate in CI refuses otherwise). */
#define XENT_ABI_VERSION 1

#define XENT_VERSION_NUMBER (XENT_VERSION_MAJOR * 10000 + XENT_VERSION_MINOR * 100 + XENT_VERSION_PATCH)

#define XENT_STRINGIFY_(x) #x
#define XENT_STRINGIFY(x) XENT_STRINGIFY_(x)
#define XENT_VERSION_STRING \
  XENT_STRINGIFY(XENT_VERSION_MAJOR) "." XENT_STRINGIFY(XENT_VERSION_MINOR) "." XENT_STRINGIFY(XENT_VERSION_PATCH)

#endif /* XENT_VERSION_H_ */
