// Native gRPC load generator for bench/data_online.py (built by the script against
// Debian's libgrpc++-dev). Replays pre-serialized unary requests -- a file of
// <uint32 little-endian length><bytes> records -- round robin, with `concurrency` calls in
// flight on one channel driven by one thread, and prints JSON: n, elapsed (s), errors,
// first_error and the latency and start time (CLOCK_MONOTONIC ns, the clock the online
// reader stamps its calls with) of every call that started after the warm-up and ended
// before the stop time, plus its own faults, context switches and run-queue wait. Optional trailing arguments ca_pem
// [cert_pem key_pem] make it a TLS (mTLS) client. A Python client spends ~0.3-0.45 ms of
// CPU per 20 KB call on this kind of machine, competing with the server for its 2 cores; this
// one ~0.1 ms.
#include <grpcpp/grpcpp.h>
#include <grpcpp/generic/generic_stub.h>
#include <dirent.h>
#include <sys/resource.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

static std::string json_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += (static_cast<unsigned char>(ch) < 0x20) ? ' ' : ch;
  }
  return out;
}

using Clock = std::chrono::steady_clock;

struct Call {
  grpc::ClientContext ctx;
  grpc::ByteBuffer response;
  grpc::Status status;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader;
  Clock::time_point started;
};

static std::vector<std::string> read_requests(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> out;
  uint32_t n;
  while (in.read(reinterpret_cast<char*>(&n), 4)) {
    std::string s(n, '\0');
    in.read(&s[0], n);
    out.push_back(std::move(s));
  }
  return out;
}

int main(int argc, char** argv) {
  if (argc != 8 && argc != 9 && argc != 11) {
    std::fprintf(stderr, "usage: %s target token method requests_file concurrency warmup_s seconds "
                 "[ca_pem [cert_pem key_pem]]\n", argv[0]);
    return 2;
  }
  std::string target = argv[1], auth = std::string("Bearer ") + argv[2], method = argv[3];
  auto requests = read_requests(argv[4]);
  int conc = std::atoi(argv[5]);
  double warmup = std::atof(argv[6]), seconds = std::atof(argv[7]);
  if (requests.empty() || conc < 1) { std::fprintf(stderr, "no requests\n"); return 2; }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto credentials = grpc::InsecureChannelCredentials();
  if (argc > 8) {
    auto slurp = [](const char* path) {
      std::ifstream in(path, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    };
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = slurp(argv[8]);
    if (argc > 9) {
      tls.pem_cert_chain = slurp(argv[9]);
      tls.pem_private_key = slurp(argv[10]);
    }
    credentials = grpc::SslCredentials(tls);
  }
  auto channel = grpc::CreateCustomChannel(target, credentials, args);
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  std::vector<grpc::ByteBuffer> bufs;
  for (auto& r : requests) {
    grpc::Slice slice(r);
    bufs.emplace_back(&slice, 1);
  }
  size_t next = 0, errors = 0;
  std::string first_error;
  std::vector<double> lat;
  std::vector<long long> starts;  // steady_clock is CLOCK_MONOTONIC on Linux
  lat.reserve(1 << 20);
  starts.reserve(1 << 20);
  auto start = [&](Call* c) {
    c->started = Clock::now();
    c->ctx.AddMetadata("authorization", auth);
    c->reader = stub.PrepareUnaryCall(&c->ctx, method, bufs[next++ % bufs.size()], &cq);
    c->reader->StartCall();
    c->reader->Finish(&c->response, &c->status, c);
  };
  auto t0 = Clock::now();
  auto record_from = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup));
  auto stop = record_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  int in_flight = 0;
  for (int i = 0; i < conc; i++) { start(new Call); in_flight++; }
  size_t recorded = 0;
  Clock::time_point first_rec{}, last_rec{};
  void* tag; bool ok;
  while (in_flight > 0 && cq.Next(&tag, &ok)) {
    Call* c = static_cast<Call*>(tag);
    auto now = Clock::now();
    in_flight--;
    if (!c->status.ok()) {
      if (errors++ == 0) first_error = c->status.error_message();
    } else if (c->started >= record_from && now <= stop) {
      lat.push_back(std::chrono::duration<double>(now - c->started).count());
      starts.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(
                           c->started.time_since_epoch()).count());
      if (recorded++ == 0) first_rec = c->started;
      last_rec = now;
    }
    delete c;
    if (now < stop) { start(new Call); in_flight++; }
  }
  double elapsed = std::chrono::duration<double>(last_rec - first_rec).count();
  std::printf("{\"n\": %zu, \"elapsed\": %.6f, \"errors\": %zu, \"first_error\": \"%s\", "
              "\"latencies\": [",
              lat.size(), elapsed, errors, json_escape(first_error).c_str());
  for (size_t i = 0; i < lat.size(); i++) std::printf(i ? ",%.7f" : "%.7f", lat[i]);
  std::printf("], \"starts_ns\": [");
  for (size_t i = 0; i < starts.size(); i++) std::printf(i ? ",%lld" : "%lld", starts[i]);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long long run_delay = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (struct dirent* e = readdir(dir)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/schedstat");
      long long on_cpu = 0, waited = 0;
      if (in >> on_cpu >> waited) run_delay += waited;
    }
    closedir(dir);
  }
  std::printf("], \"minor_faults\": %ld, \"major_faults\": %ld, \"voluntary_switches\": %ld, "
              "\"involuntary_switches\": %ld, \"run_delay_ns\": %lld}\n",
              ru.ru_minflt, ru.ru_majflt, ru.ru_nvcsw, ru.ru_nivcsw, run_delay);
  return errors ? 1 : 0;
}
