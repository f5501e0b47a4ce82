// wscengine — adapter internals: TLS client contexts shared by the connections of the
// process, one per distinct set of TLS settings, and TLS session resumption per
// origin. C++17 and standard types only (the websocketpp bridge uses it). Not public API.
//
// Why: a context holds the parsed trust store (the system store is hundreds of
// certificates); built per dial, every connection carried its own copy and every
// reconnect parsed it again. Shared, the store is loaded once per settings, and the
// context also keeps the last session of each origin, so that a reconnect storm does
// abbreviated handshakes (TLS 1.3 tickets, TLS 1.2 session IDs).
//
// What stays per connection (on its SSL object, never on the shared context): the
// verify mode, the host name to check, SNI, and the CertificateGate (pins and the
// user's verify callback), which the context's verify callback finds through the
// connection's TlsBinding in the SSL's ex_data.
#pragma once

#include <sys/stat.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio/ssl/context.hpp>

#include <wscengine/detail/client_tls.hpp>

#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace wscengine::detail {

/// Counts of the process, for tls_stats() of the adapters. Thread safety: atomics.
struct TlsCounters {
  std::atomic<std::uint64_t> contexts_created{0};
  std::atomic<std::uint64_t> handshakes_full{0};
  std::atomic<std::uint64_t> handshakes_resumed{0};
};
inline TlsCounters& tls_counters() {
  static TlsCounters counters;
  return counters;
}

class SharedTlsContext;

/// What one connection's SSL object tells the shared context's callbacks: whose
/// certificate check runs, and under which key its session is kept (empty: none).
/// Owned by the connection; it must outlive the SSL object's handshakes and reads.
struct TlsBinding {
  SharedTlsContext* owner = nullptr;
  CertificateGate* gate = nullptr;  ///< when the gate is active()
  std::string session_key;          ///< empty: no resumption for this connection
};

/// The key under which a connection's sessions are kept: everything a resumed
/// handshake skips checking must be equal (the name, the verify mode, the pins).
/// Empty (no resumption) with a verify callback: a resumed handshake shows no
/// certificate for it to decide on.
inline std::string tls_session_key(bool enabled, const std::string& host, unsigned short port,
                                   const std::string& tls_name, bool verify_peer, const std::vector<std::string>& pins,
                                   bool has_verify_callback, const std::string& purpose) {
  if (!enabled || has_verify_callback) return {};
  std::string key =
      purpose + '|' + host + '|' + std::to_string(port) + '|' + tls_name + '|' + (verify_peer ? "verify" : "no-verify");
  for (const auto& pin : pins) key += '|' + pin;
  return key;
}

/// One client TLS context and the sessions kept per origin. Thread safety: any thread
/// (OpenSSL shares a context between threads; the sessions are under a lock).
class SharedTlsContext {
 public:
  /// The most origins whose session is kept; beyond, the oldest kept is dropped.
  static constexpr std::size_t kMaxSessions = 4096;

  SharedTlsContext() : context_(boost::asio::ssl::context::tls_client) {}
  ~SharedTlsContext() {
    for (auto& entry : sessions_) SSL_SESSION_free(entry.second.session);
  }
  SharedTlsContext(const SharedTlsContext&) = delete;
  SharedTlsContext& operator=(const SharedTlsContext&) = delete;

  /// Loads the settings; "" or what failed. Called once, before any connection uses it.
  std::string setup(const ClientTlsSettings& settings) {
    if (auto failed = setup_client_tls(context_, settings); !failed.empty()) return failed;
    SSL_CTX* ctx = context_.native_handle();
    // An idle connection gives its read and write buffers back (about 34 KiB).
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_cert_verify_callback(ctx, &SharedTlsContext::verify, nullptr);
    // Sessions are kept here, per origin, not in OpenSSL's cache (which a client
    // never looks up by itself).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &SharedTlsContext::on_new_session);
    return {};
  }

  boost::asio::ssl::context& context() noexcept { return context_; }

  /// Before the handshake: binds `ssl` to `binding` and offers the origin's session.
  void prepare(SSL* ssl, TlsBinding& binding) {
    binding.owner = this;
    SSL_set_ex_data(ssl, binding_index(), &binding);
    if (binding.session_key.empty()) return;
    SSL_SESSION* session = nullptr;
    {
      std::lock_guard lock(mutex_);
      auto found = sessions_.find(binding.session_key);
      // Each connection gets its own copy: OpenSSL marks the session a connection used
      // or lost (fatal error, no close_notify) as not resumable, which must not spoil
      // it for the others that reconnect at the same moment.
      if (found != sessions_.end() && SSL_SESSION_is_resumable(found->second.session))
        session = SSL_SESSION_dup(found->second.session);
    }
    if (session) {
      SSL_set_session(ssl, session);
      SSL_SESSION_free(session);
    }
  }

  /// After a handshake that succeeded: counts it, full or resumed.
  static void count_handshake(SSL* ssl) {
    (SSL_session_reused(ssl) ? tls_counters().handshakes_resumed : tls_counters().handshakes_full)
        .fetch_add(1, std::memory_order_relaxed);
  }

  /// Sessions kept now (for tests).
  std::size_t sessions_kept() const {
    std::lock_guard lock(mutex_);
    return sessions_.size();
  }

 private:
  struct Kept {
    SSL_SESSION* session;
    std::uint64_t order;
  };

  static int binding_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
  }
  static TlsBinding* binding_of(SSL* ssl) {
    return ssl ? static_cast<TlsBinding*>(SSL_get_ex_data(ssl, binding_index())) : nullptr;
  }

  // OpenSSL's chain check, or the connection's gate in its place (the gate runs it too).
  static int verify(X509_STORE_CTX* store, void*) {
    auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    TlsBinding* binding = binding_of(ssl);
    if (binding && binding->gate) return binding->gate->verify_chain(store);
    return X509_verify_cert(store);
  }

  // A session (or TLS 1.3 ticket) arrived: a copy is kept for the origin (the
  // connection's own may be marked not resumable when it ends); 0 = not taken.
  static int on_new_session(SSL* ssl, SSL_SESSION* session) {
    TlsBinding* binding = binding_of(ssl);
    if (!binding || !binding->owner || binding->session_key.empty()) return 0;
    if (SSL_SESSION* copy = SSL_SESSION_dup(session)) binding->owner->keep(binding->session_key, copy);
    return 0;
  }

  void keep(const std::string& key, SSL_SESSION* session) {
    std::lock_guard lock(mutex_);
    auto [entry, fresh] = sessions_.try_emplace(key, Kept{session, ++order_});
    if (!fresh) {
      SSL_SESSION_free(entry->second.session);
      entry->second = Kept{session, order_};
      return;
    }
    if (sessions_.size() <= kMaxSessions) return;
    auto oldest = sessions_.begin();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it)
      if (it->second.order < oldest->second.order) oldest = it;
    SSL_SESSION_free(oldest->second.session);
    sessions_.erase(oldest);
  }

  boost::asio::ssl::context context_;
  mutable std::mutex mutex_;
  std::map<std::string, Kept> sessions_;  // (mutex_)
  std::uint64_t order_ = 0;               // (mutex_)
};

/// TLS contexts, one per distinct ClientTlsSettings (and the files they name, as they
/// are on disk: a replaced CA file makes a new context). Thread safety: any thread.
class TlsContextCache {
 public:
  /// The most distinct settings kept; beyond, the one used least recently goes (its
  /// connections keep it alive).
  static constexpr std::size_t kMaxContexts = 32;

  /// The shared context for `settings`, built on first use; nullptr with `failure`
  /// set when the settings cannot be loaded (nothing is kept then).
  std::shared_ptr<SharedTlsContext> get(const ClientTlsSettings& settings, std::string& failure) {
    const std::string key = key_of(settings);
    std::lock_guard lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->first != key) continue;
      entries_.splice(entries_.begin(), entries_, it);
      return it->second;
    }
    // Built under the lock, once: a thousand engines dialling at once with new
    // settings wait for one load of the trust store (milliseconds) instead of each
    // doing it.
    auto built = std::make_shared<SharedTlsContext>();
    failure = built->setup(settings);
    if (!failure.empty()) return nullptr;
    tls_counters().contexts_created.fetch_add(1, std::memory_order_relaxed);
    entries_.emplace_front(key, built);
    if (entries_.size() > kMaxContexts) entries_.pop_back();
    return built;
  }

 private:
  static std::string file_identity(const std::string& path) {
    if (path.empty()) return {};
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return path + "|missing";
    return path + '|' + std::to_string(st.st_ino) + '|' + std::to_string(st.st_size) + '|' +
           std::to_string(st.st_mtim.tv_sec) + '.' + std::to_string(st.st_mtim.tv_nsec);
  }
  static std::string key_of(const ClientTlsSettings& s) {
    std::string key;
    auto add = [&key](const std::string& part) {
      key += std::to_string(part.size());
      key += ':';
      key += part;
    };
    add(file_identity(s.ca_file));
    add(s.ca_pem);
    add(file_identity(s.certificate_file));
    add(file_identity(s.private_key_file));
    add(s.private_key_password);
    add(s.tls13_only ? "1.3" : "1.2");
    return key;
  }

  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<SharedTlsContext>>> entries_;  // most recent first (mutex_)
};

/// The process's contexts: every connector's connections share them, so that engines
/// built each with their own connector (the common case) still load a trust store
/// once. Never destroyed (connections may end during static destruction).
inline TlsContextCache& process_tls_contexts() {
  static auto* cache = new TlsContextCache;
  return *cache;
}

}  // namespace wscengine::detail
