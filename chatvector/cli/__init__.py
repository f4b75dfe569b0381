"""The command line: the scripts' typed mains and everything between a terminal and the library.

options.py reads the whole command line before any work (values typed the way fire types them,
errors as one `error:` line); commands.py holds one main per script and the console entry points;
repl.py is the chat loop and terminal I/O, apart from any model. The top floor: it may import every
package below it, and nothing imports it.
"""
