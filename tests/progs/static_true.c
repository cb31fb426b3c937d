/* SPDX-License-Identifier: MIT */
/* A statically linked program: the shim is never loaded into it. */
int main(void)
{
	return 0;
}
