// SPDX-License-Identifier: MIT
// C++: a lost object owning a buffer (one direct, one indirect leak), and
// one kept in a global.
#include <cstring>

struct Widget {
	char *buffer;
	explicit Widget(unsigned n) : buffer(new char[n]) { std::memset(buffer, 0, n); }
};

static Widget *kept;

static Widget *make_widget(unsigned n)
{
	return new Widget(n);
}

static void lose_widget()
{
	Widget *w = make_widget(500);
	w->buffer[0] = 1;
	w = nullptr;
}

int main()
{
	lose_widget();
	kept = make_widget(300);
	return kept->buffer[0];
}
