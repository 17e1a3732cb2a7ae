// Symbol visibility: the library is built with hidden visibility; only what is marked
// STACKLLAMA_API is exported from the shared object.
#pragma once

#if defined(STACKLLAMA_STATIC)
#define STACKLLAMA_API
#elif defined(_WIN32)
#if defined(STACKLLAMA_BUILDING)
#define STACKLLAMA_API __declspec(dllexport)
#else
#define STACKLLAMA_API __declspec(dllimport)
#endif
#else
#define STACKLLAMA_API __attribute__((visibility("default")))
#endif
