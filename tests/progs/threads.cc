// SPDX-License-Identifier: MIT
// Threads with standard containers, objects freed on threads other than the
// one that made them. Prints a checksum that must not depend on the allocator.
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

int main()
{
	std::mutex m;
	std::vector<std::string *> shared;
	std::vector<std::thread> ts;
	unsigned long sums[4] = {};
	for (int t = 0; t < 4; t++)
		ts.emplace_back([&, t] {
			std::map<int, std::string> mp;
			for (int i = 0; i < 100000; i++) {
				mp[i % 1000] = std::string(i % 300, char('a' + t));
				if (i % 7 == 0) {
					std::lock_guard<std::mutex> g(m);
					shared.push_back(new std::string(100 + i % 50, 'y'));
				}
				if (i % 11 == 0) {
					std::lock_guard<std::mutex> g(m);
					if (!shared.empty()) {
						delete shared.back();
						shared.pop_back();
					}
				}
			}
			for (auto &kv : mp)
				sums[t] += kv.second.size();
		});
	for (auto &t : ts)
		t.join();
	// What is left in `shared` depends on the interleaving: freed, not printed.
	for (auto *s : shared)
		delete s;
	std::printf("%lu %lu %lu %lu\n", sums[0], sums[1], sums[2], sums[3]);
	return 0;
}
