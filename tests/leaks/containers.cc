// SPDX-License-Identifier: MIT
// No leak: C++ containers and strings, all destroyed before exit.
#include <map>
#include <memory>
#include <string>
#include <vector>

int main()
{
	std::map<std::string, std::vector<int>> m;
	for (int i = 0; i < 200; i++)
		m["key-number-" + std::to_string(i)].assign(static_cast<size_t>(i), i);
	auto p = std::make_unique<std::vector<std::string>>(50, std::string(100, 'x'));
	return m.size() == 200 && p->size() == 50 ? 0 : 1;
}
