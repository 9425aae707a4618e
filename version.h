/* SPDX-License-Identifier: Apache-2.0 */
/* version.h: the release version; the Makefile appends the git commit when it knows one. */
#ifndef KUBEZONNET_VERSION
#define KUBEZONNET_VERSION "0.1.0"
#endif
