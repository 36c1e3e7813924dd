// The Babel pass the plugin server (1.10.x) runs over a plugin before it executes it:
// presets typescript and env, plus three plugins of its own, re-implemented here
// from their observed behaviour.
import * as babel from '@babel/standalone';

export const TASK_TIMEOUT_SECONDS = 30;

// `import`/`require` of anything the host does not provide fails at load.
function replaceImports(imports) {
  return ({ types: t }) => {
    const refuse = (source) => {
      throw new Error(`Cannot import '${source}'! This package is not provided by PostHog in plugins.`);
    };
    const provided = (source) =>
      t.memberExpression(t.identifier('__pluginHostImports'), t.stringLiteral(source), true);
    return {
      visitor: {
        ImportDeclaration(path) {
          const source = path.node.source.value;
          if (!(source in imports)) refuse(source);
          path.replaceWith(
            t.variableDeclaration(
              'const',
              path.node.specifiers.map((s) =>
                t.variableDeclarator(
                  s.local,
                  t.isImportSpecifier(s)
                    ? t.memberExpression(provided(source), t.stringLiteral(s.imported.name), true)
                    : provided(source),
                ),
              ),
            ),
          );
        },
        CallExpression(path) {
          const { callee, arguments: args } = path.node;
          if (t.isIdentifier(callee, { name: 'require' }) && args.length === 1 && t.isStringLiteral(args[0])) {
            if (!(args[0].value in imports)) refuse(args[0].value);
            path.replaceWith(provided(args[0].value));
          }
        },
      },
    };
  };
}

// Every while/for/do-while body starts with a check of the time since the loop began.
// The host reads `Date.now()`; here the plugin's Date.now is a fake clock that barely
// moves within a call, so the guard reads the real one (`__asyncGuard.realNow`, a
// host global), and a loop that really runs too long still fails.
function loopTimeout({ types: t }) {
  const now = () =>
    t.callExpression(t.memberExpression(t.identifier('__asyncGuard'), t.identifier('realNow')), []);
  const guard = (path) => {
    const { loc } = path.node;
    if (!loc) return; // code Babel generated itself
    const started = path.scope.generateUidIdentifier('LP');
    const message = `Script execution timed out after looping for ${TASK_TIMEOUT_SECONDS} seconds on line ${loc.start.line}:${loc.start.column}`;
    const check = t.ifStatement(
      t.binaryExpression('>', t.binaryExpression('-', now(), started), t.numericLiteral(TASK_TIMEOUT_SECONDS * 1000)),
      t.throwStatement(t.newExpression(t.identifier('Error'), [t.stringLiteral(message)])),
    );
    const { body } = path.node;
    path.node.body = t.blockStatement(t.isBlockStatement(body) ? [check, ...body.body] : [check, body]);
    path.insertBefore(t.variableDeclaration('const', [t.variableDeclarator(started, now())]));
  };
  return { visitor: { WhileStatement: guard, ForStatement: guard, DoWhileStatement: guard } };
}

// Every `await x` and `x.then` races a 30 s timer.
function promiseTimeout({ types: t }) {
  const done = Symbol('guarded');
  const guard = (...args) => {
    const call = t.callExpression(t.identifier('__asyncGuard'), args);
    call[done] = true;
    return call;
  };
  return {
    visitor: {
      MemberExpression: {
        exit(path) {
          const { node } = path;
          if (node[done] || !t.isIdentifier(node.property, { name: 'then' }) || node.computed) return;
          const replaced = t.memberExpression(guard(node.object), node.property);
          replaced[done] = true;
          path.replaceWith(replaced);
        },
      },
      AwaitExpression: {
        exit(path) {
          const { node } = path;
          if (node[done]) return;
          const arg = node.argument;
          const replaced = t.awaitExpression(guard(arg, t.isCallExpression(arg) ? t.cloneNode(arg.callee) : t.cloneNode(arg)));
          replaced[done] = true;
          path.replaceWith(replaced);
        },
      },
    },
  };
}

export function transformLikeHost(code, imports = {}) {
  const result = babel.transform(code, {
    envName: 'production',
    code: true,
    babelrc: false,
    configFile: false,
    filename: 'index.ts',
    presets: ['typescript', ['env', { targets: { node: process.versions.node } }]],
    plugins: [replaceImports(imports), loopTimeout, promiseTimeout],
  });
  if (!result || !result.code) throw new Error('Babel transform gone wrong!');
  return result.code;
}
